//! What framing a viewer's server stream costs `pvmouse-vnc` (a viewer that asks for pointer
//! type changes is framed, every other passes through): one whole-screen update, 1920x1080 in
//! 64x64 rectangles, framed by `ServerFramer` and, for comparison, copied as it is, both from
//! memory into memory, so that only the framing differs. Throughput is the update's bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pvmouse_vnc::rfb::{PixelFormat, ServerFramer, ServerInit, TIGHT, ZRLE};

const WIDTH: u16 = 1920;
const HEIGHT: u16 = 1080;
const TILE: u16 = 64;
/// Compressed bytes per rectangle: 2 KiB of a 16 KiB tile, a desktop's usual ratio.
const PAYLOAD: usize = 2048;

/// One FramebufferUpdate of the whole screen in `encoding`, each rectangle `PAYLOAD` bytes of
/// zlib data behind the encoding's own header.
fn update(encoding: i32) -> Vec<u8> {
    let (cols, rows) = (WIDTH.div_ceil(TILE), HEIGHT.div_ceil(TILE));
    let mut b = vec![0, 0];
    b.extend_from_slice(&(cols * rows).to_be_bytes());
    for row in 0..rows {
        for col in 0..cols {
            for v in [col * TILE, row * TILE, TILE, TILE] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&encoding.to_be_bytes());
            let len = u32::try_from(PAYLOAD).unwrap_or(0);
            if encoding == TIGHT {
                // Basic compression, copy filter, zlib stream 0, then a 2-byte compact length.
                b.push(0x00);
                b.push(u8::try_from(len & 0x7f).unwrap_or(0) | 0x80);
                b.push(u8::try_from(len >> 7).unwrap_or(0));
            } else {
                b.extend_from_slice(&len.to_be_bytes());
            }
            b.extend((0..PAYLOAD).map(|i| u8::try_from(i * 31 % 251).unwrap_or(0)));
        }
    }
    b
}

fn vnc_framing(c: &mut Criterion) {
    let init = ServerInit {
        width: WIDTH,
        height: HEIGHT,
        format: PixelFormat {
            bits_per_pixel: 32,
            tight_pixel: 3,
        },
    };
    let mut g = c.benchmark_group("vnc_framing");
    for (name, encoding) in [("tight", TIGHT), ("zrle", ZRLE)] {
        let message = update(encoding);
        g.throughput(Throughput::Bytes(message.len() as u64));
        let mut out = Vec::with_capacity(message.len());
        g.bench_function(format!("{name}_update_framed"), |b| {
            let mut framer = ServerFramer::new(&init);
            b.iter(|| {
                out.clear();
                let (&kind, mut rest) = message.split_first().expect("a message");
                framer
                    .copy_message(kind, &mut rest, &mut out)
                    .expect("framed");
                black_box(out.len())
            })
        });
        g.bench_function(format!("{name}_update_passed_through"), |b| {
            b.iter(|| {
                out.clear();
                std::io::copy(&mut message.as_slice(), &mut out).expect("copied");
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, vnc_framing);
criterion_main!(benches);
