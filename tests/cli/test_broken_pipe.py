"""A reader that closes the pipe early (``attnkit list | head``) ends the command quietly."""

from __future__ import annotations

import subprocess
import sys


def test_closed_pipe_gives_no_traceback():
    # the read end is closed before the child writes anything, so its first write meets EPIPE
    p = subprocess.Popen([sys.executable, "-m", "attnkit", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(timeout=300)
    assert "BrokenPipeError" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert rc == 141
