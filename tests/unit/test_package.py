from __future__ import annotations

import subprocess
import sys


def test_library_imports_without_prefect_or_tensorflow() -> None:
    code = (
        "import sys, ser_batch, ser_batch.batch, ser_batch.score, ser_batch.train, ser_batch.catalog; "
        "print(sorted(m for m in ('prefect', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
