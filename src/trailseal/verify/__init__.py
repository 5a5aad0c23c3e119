"""What an outside auditor runs: receipt checks and a log monitor. Depends on ``core`` only."""

from trailseal.verify.receipt import verify_receipt

__all__ = ["verify_receipt"]
