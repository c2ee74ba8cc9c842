from __future__ import annotations

import subprocess
import sys


def test_library_imports_without_prefect_or_tensorflow() -> None:
    code = (
        "import sys, ser_batch, ser_batch.jobs.featurize, ser_batch.jobs.score, ser_batch.model.fit, ser_batch.jobs.plan; "
        "print(sorted(m for m in ('prefect', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
