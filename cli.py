"""Run the doctor from a checkout: `python cli.py fit data.csv` (same as the `doctor` command)."""
from doctor.cli import main

if __name__ == "__main__":
    main()
