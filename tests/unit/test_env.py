import json

from course_utils import env


def test_fingerprint_has_hardware_and_versions():
    fp = env.fingerprint()
    for key in ("hardware", "python", "cpu", "cpu_cores", "memory_gib", "gpus",
                "cuda_simulator", "packages"):
        assert key in fp
    assert fp["packages"]["torch"] and fp["packages"]["numba"]
    json.dumps(fp)


def test_checklist_names_each_item_and_gives_fixes_for_missing_ones():
    checks = env.checklist()
    names = {c.name for c in checks}
    assert {"GPU seen by PyTorch", "GPU seen by Numba", "CUDA simulator",
            "C++ compiler (torch.compile)", "MPI (mpi4py + mpiexec)",
            "Jupyter kernel"} <= names
    for c in checks:
        if not c.ok:
            assert c.fix, f"{c.name} is missing but says no fix"


def test_report_json_parses():
    data = json.loads(env.report(as_json=True))
    assert set(data) == {"fingerprint", "checks"}
