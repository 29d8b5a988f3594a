"""A gtk-vnc viewer (GtkVnc.Display, the widget virt-viewer and remote-viewer are built on),
driven line by line from standard input, under Xvfb:

  abs X Y    send_pointer: a position in framebuffer pixels (absolute mode only, as in gtk-vnc)
  grab       take the pointer grab, as a click in the window does in relative mode
  to X Y     warp the local pointer to (X, Y) in the window
  move DX DY warp the local pointer by (DX, DY): X sends gtk-vnc the motion it reads deltas from
  shot FILE  save what gtk-vnc has drawn of the framebuffer as a PNG
  quit

It prints INIT once connected, then MODE absolute|relative, and again whenever the server's
pointer type changes, GRABBED, DONE after each command, and GONE when the connection ends.

Usage: xvfb-run -a /usr/bin/python3 gtk_vnc.py PORT
"""
import os
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("GtkVnc", "2.0")
from gi.repository import Gdk, GLib, Gtk, GtkVnc  # noqa: E402

port = sys.argv[1]
window = Gtk.Window()
window.set_default_size(1000, 700)
display = GtkVnc.Display()
window.add(display)
mode = {"now": None, "initialized": False}


def say(*words):
    print(*words, flush=True)


def pointer():
    return Gdk.Display.get_default().get_default_seat().get_pointer()


at = {"x": 0, "y": 0}


def warp(x, y):
    at["x"], at["y"] = x, y
    screen, _, _ = pointer().get_position()
    pointer().warp(screen, x, y)


def follow_mode():
    # gtk-vnc has no signal for it on the widget; polling in the test's viewer costs nothing here.
    if mode["initialized"]:
        now = "absolute" if display.is_pointer_absolute() else "relative"
        if now != mode["now"]:
            mode["now"] = now
            say("MODE", now)
    return True


pending = {"text": b""}


def commands(_source, _condition):
    # Every line that has come, not one a wake-up: lines that came together wake this once.
    data = os.read(0, 4096)
    if not data:
        Gtk.main_quit()
        return False
    pending["text"] += data
    *lines, pending["text"] = pending["text"].split(b"\n")
    for line in lines:
        if not run(line.decode().split()):
            Gtk.main_quit()
            return False
    return True


def run(words):
    op, *args = words
    n = [int(a) for a in args if a.lstrip("-").isdigit()]
    if op == "abs":
        display.send_pointer(n[0], n[1], 0)
    elif op == "grab":
        display.force_grab(True)
    elif op == "to":
        _, ox, oy = display.get_window().get_origin()
        warp(ox + n[0], oy + n[1])
    elif op == "move":
        # From where the last command put it: the server may not have moved it there yet.
        warp(at["x"] + n[0], at["y"] + n[1])
    elif op == "shot":
        # What gtk-vnc has drawn of the framebuffer, as a PNG.
        display.get_pixbuf().savev(words[1], "png", [], [])
    elif op == "quit":
        return False
    say("DONE", op)
    return True


def initialized(*_):
    mode["initialized"] = True
    say("INIT")


display.connect("vnc-initialized", initialized)
display.connect("vnc-pointer-grab", lambda *_: say("GRABBED"))
display.connect("vnc-disconnected", lambda *_: (say("GONE"), Gtk.main_quit()))
GLib.timeout_add(20, follow_mode)
GLib.io_add_watch(GLib.IOChannel.unix_new(0), GLib.IO_IN | GLib.IO_HUP, commands)
window.show_all()
display.open_host("127.0.0.1", port)
Gtk.main()
