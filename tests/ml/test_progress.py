"""Progress: throttled messages with done/total, rate and ETA, and the same updates for
observers."""

from __future__ import annotations

from ml.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_messages_and_updates_are_throttled_and_finish_always_reports():
    clock, lines, updates = FakeClock(), [], []
    progress = Progress(100, "resize", interval=5.0, emit=lines.append,
                        on_update=lambda d, t, r: updates.append((d, t, r)), clock=clock)
    for _ in range(10):                 # 10 items within 1 s: no message yet
        clock.now += 0.1
        progress.advance()
    assert lines == [] and updates == []
    clock.now = 105.0                   # 5 s after the start
    progress.advance(10)
    assert lines == ["resize: 20/100 (20.0%), 4.0/s, ETA 20s"]
    assert updates == [(20, 100, 4.0)]
    assert progress.eta_seconds() == 20.0
    clock.now = 106.0
    progress.advance(80)                # within the interval: silent
    assert len(lines) == 1
    progress.finish()
    assert lines[-1] == "resize: 100/100 done in 6s (16.7/s)"
    assert updates[-1][:2] == (100, 100) and len(updates) == 2


def test_eta_is_unknown_before_any_work():
    clock = FakeClock()
    progress = Progress(10, "verify", emit=lambda m: None, clock=clock)
    assert progress.eta_seconds() is None
    assert progress.message().endswith("ETA ?")
