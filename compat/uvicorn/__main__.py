"""``python -m uvicorn`` runs Pounce's command line."""

from __future__ import annotations

from pounce.main import main

if __name__ == "__main__":
    main()
