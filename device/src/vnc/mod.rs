//! `pvmouse-vnc`, the VNC front door: an RFB proxy per head in front of QEMU's VNC servers. The
//! viewers' pointer events become pvmouse input on that head's display; everything else passes
//! through.

pub mod pointer;
pub mod proxy;
pub mod rfb;
