import subprocess
import sys


def test_import_does_not_load_tensorflow_or_orbax():
    code = (
        "import sys, scenic_eqx; "
        "heavy = sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'orbax') if m in sys.modules); "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
