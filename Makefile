# pvmouse: the two commands README.md opens with, and their helpers.
.PHONY: demo test bench check-tools

CARGO ?= cargo
DEMO_DIR := target/demo

# The main job. Until the VM demo lands, it builds and runs the backend with two displays.
demo:
	$(CARGO) build --release -p vhost-user-pvmouse
	mkdir -p $(DEMO_DIR)
	@echo "attach QEMU to $(DEMO_DIR)/vhost.sock; send QMP to $(DEMO_DIR)/control.sock (Ctrl-C stops)"
	./target/release/vhost-user-pvmouse --socket-path $(DEMO_DIR)/vhost.sock \
		--control-socket $(DEMO_DIR)/control.sock --displays 2

# Every test: formatting, lints, unit, integration and protocol tests.
test: check-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

# The control-protocol tests drive the socket with Python's stock qemu.qmp library.
check-tools:
	@python3 -c 'import qemu.qmp' 2>/dev/null || \
		python3 -m pip install --quiet --disable-pip-version-check qemu.qmp

bench:
	$(CARGO) bench -p pvmouse-benches
