"""perf-record-baselines, for a checkout without the package installed: `python tools/record_baselines.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's perf/, installed or not
from perf.record import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
