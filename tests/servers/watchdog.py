"""A watchdog that cleans up after a test server however the test process ends.

The watchdog is a shell reading a pipe whose only writer is this process: end of file means
this process has ended (killed, crashed or done) or `release()` was called, and the shell then
runs its clean-up script (stop the server, remove its folder). The pipe's ends are not
inherited by the server itself.
"""

import contextlib
import os
import subprocess


class Watchdog:
    def __init__(self, script: str, *args: str, **popen_options):
        read_end, self._lifeline = os.pipe()
        try:
            self._process = subprocess.Popen(
                ["sh", "-c", script, *args],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
                **popen_options,
            )
        except BaseException:
            os.close(self._lifeline)
            raise
        finally:
            os.close(read_end)

    def release(self) -> None:
        """Let the clean-up run now, and wait a little for it."""
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
