# pvmouse: the two commands README.md opens with, and their helpers.
.PHONY: demo run-backend deb test bench bench-many bench-smoke bench-render microbench fuzz check-tools

CARGO ?= cargo
DEMO_DIR := target/demo

# The main job: boot a guest (QEMU 10, TCG) whose pvmouse has two displays, tour the pointer
# across both with clicks and scrolls, compare what the guest's evdev saw, draw the path to
# target/demo/pointer-path.svg. Installs QEMU and fetches the guest kernel on first use.
demo:
	$(CARGO) run --release -p pvmouse-vmtest --bin pvmouse-demo

# The backend alone, for attaching your own QEMU.
run-backend:
	$(CARGO) build --release -p vhost-user-pvmouse
	mkdir -p $(DEMO_DIR)
	@echo "attach QEMU to $(DEMO_DIR)/vhost.sock; send QMP to $(DEMO_DIR)/control.sock (Ctrl-C stops)"
	./target/release/vhost-user-pvmouse --socket-path $(DEMO_DIR)/vhost.sock \
		--control-socket $(DEMO_DIR)/control.sock --displays 2

# Debian packages into target/debian/: vhost-user-pvmouse (the backend, its systemd units,
# libvirt hook and QEMU discovery descriptor), pvmouse-vnc, and pvmouse-guest (the guest's
# bridge, session agent, udev rule and units). Installs cargo-deb and lintian on first use.
DEB_CRATES := vhost-user-pvmouse pvmouse-vnc pvmouse-guestd
deb:
	scripts/install-packaging-tools
	$(CARGO) build --release -p vhost-user-pvmouse -p pvmouse-vnc -p pvmouse-guestd -p pvmouse-session
	$(CARGO) run -q --release -p pvmouse-packaging -- target/release/man
	gzip -9nf target/release/man/*.1
	for crate in $(DEB_CRATES); do \
		target/tools/bin/cargo-deb -p $$crate --no-build --strip --output target/debian/ || exit 1; \
	done

# Every test: formatting, lints, unit, integration, protocol and real-QEMU end-to-end tests.
# pvmouse-prepare installs, fetches and builds what the VM tests need first, saying each step
# and its time (the test runner would keep that output until the end).
test: check-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) run -q -p pvmouse-vmtest --bin pvmouse-prepare
	$(CARGO) test --workspace

# The control-protocol tests drive the socket with Python's stock qemu.qmp library, and the
# VNC tests drive pvmouse-vnc with vncdotool, a VNC client from PyPI. The versions are pinned:
# vncdotool's VNC authentication uses cryptography's TripleDES, which cryptography has deprecated
# for removal, so a newer cryptography could break the password test on a fresh machine.
PY_TOOLS := qemu.qmp==0.0.6 vncdotool==1.4.2 cryptography==48.0.0
check-tools:
	@python3 -c 'import sys, importlib.metadata as m; \
		sys.exit(any(m.version(n) != v for n, v in (t.split("==") for t in sys.argv[1:])))' \
		$(PY_TOOLS) 2>/dev/null || \
		python3 -m pip install --quiet --disable-pip-version-check $(PY_TOOLS)

# The end-to-end benchmark: pvmouse (bridged and raw), virtio-tablet-pci and usb-tablet (xhci,
# UHCI), each in its own VM, then the desktop and VNC paths. Keeps the figures as JSON in
# benches/results/ and target/vm-bench/, and renders from them the generated sections of
# benches/RESULTS.md; draws benches/latency-cdf.svg. 205 to 288 s for the kinds here.
bench:
	$(CARGO) run --release -p pvmouse-benches --bin pvmouse-vmbench

# The same with a few hundred samples per kind, into target/vm-bench/ (CI runs it as a test).
bench-smoke:
	$(CARGO) run --release -p pvmouse-benches --bin pvmouse-vmbench -- --smoke

# 100 restartable backends on one host, attached in-process (no VM): PSS, descriptors, idle
# CPU and one client's latency under load, into benches/RESULTS.md. About 90 s.
bench-many:
	$(CARGO) run --release -p pvmouse-benches --bin pvmouse-manybench

# The generated sections of benches/RESULTS.md again, from the figures kept in benches/results/
# (no VM): after editing a template in benches/templates/.
bench-render:
	$(CARGO) run --release -p pvmouse-benches --bin pvmouse-vmbench -- --render-only

# The criterion micro-benchmarks of the backend's frame path, the bridge's mapping and
# pvmouse-vnc's server framing.
microbench:
	$(CARGO) bench -p pvmouse-benches --bench frame_path --bench bridge_mapping --bench vnc_framing

# Every cargo-fuzz target for FUZZ_MINUTES each (installs cargo-fuzz on first use).
FUZZ_MINUTES ?= 10
fuzz:
	scripts/fuzz $(FUZZ_MINUTES)
