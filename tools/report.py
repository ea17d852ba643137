"""perf-report, for a checkout without the package installed: `python tools/report.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's perf/, installed or not
from perf.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
