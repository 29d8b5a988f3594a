"""Drives vhost-user-pvmouse's control socket with the stock qemu.qmp library, unmodified."""
import asyncio
import sys

from qemu.qmp import ExecuteError, QMPClient


async def main(path: str) -> None:
    qmp = QMPClient("pvmouse-test")
    await qmp.connect(path)
    status = await qmp.execute("query-pvmouse")
    assert status["displays"] == 2, status
    assert status["frontend-connected"] is False, status

    await qmp.execute("input-send-event", {
        "head": 1,
        "events": [{"type": "abs", "data": {"axis": "x", "value": 100}}],
    })
    await qmp.execute("pvmouse-send", {"y": 0.5, "buttons": {"left": True}})
    try:
        await qmp.execute("pvmouse-send", {"display": 9})
        raise SystemExit("display 9 was accepted")
    except ExecuteError as err:
        assert "out of range" in str(err), err

    status = await qmp.execute("query-pvmouse")
    pointer = status["pointer"]
    assert pointer == {
        "display": 1, "x": 200, "y": 32768,
        "buttons": {"left": True, "right": False, "middle": False, "side": False, "extra": False},
    }, pointer
    await qmp.disconnect()
    print("qemu.qmp session ok")


asyncio.run(main(sys.argv[1]))
