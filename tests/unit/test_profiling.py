"""course_utils.gpu.profiling (lesson 10): cost formulas against brute-force counts, roofline
placement, the occupancy model, knob validation, and the Nsight helpers.

Pure arithmetic, so it runs anywhere; the two tests marked ``gpu`` compare the occupancy
model with the CUDA driver and run the Nsight demo workload on a real GPU.
"""

import subprocess
import sys

import numpy as np
import pytest

from course_utils import profiles
from course_utils.errors import CourseError, UsageError
from course_utils.gpu import launch, profiling, roofline
from course_utils.timing import Timing

# --------------------------------------------------------------------------- costs


def blur_flop_brute_force(rows, cols):
    """Count the blur kernel's operations pixel by pixel: its in-image neighbours
    (additions) plus one division."""
    flop = 0
    for r in range(rows):
        for c in range(cols):
            neighbours = ((min(r + 2, rows) - max(r - 1, 0))
                          * (min(c + 2, cols) - max(c - 1, 0)))
            flop += neighbours + 1
    return flop


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 5), (2, 3), (7, 13), (20, 30), (33, 17)])
def test_blur_cost_matches_a_brute_force_count(rows, cols):
    cost = profiling.blur_cost(rows, cols)
    assert cost.flop == blur_flop_brute_force(rows, cols)
    assert cost.nbytes == 8 * rows * cols


def test_blur_intensity_tends_to_ten_flop_per_eight_bytes():
    assert profiling.blur_cost(4096, 4096).intensity == pytest.approx(10 / 8, rel=1e-3)
    assert profiling.blur_cost(3, 3).flop == 4 + 6 + 4 + 6 + 9 + 6 + 4 + 6 + 4 + 9


def test_element_wise_and_copy_costs():
    saxpy = profiling.saxpy_cost(1001)
    assert (saxpy.flop, saxpy.nbytes) == (2 * 1001, 12 * 1001)
    assert saxpy.intensity == pytest.approx(1 / 6)
    copy = profiling.copy_kernel_cost(10)
    assert (copy.flop, copy.nbytes, copy.intensity) == (0, 80, 0.0)
    assert profiling.strided_copy_cost(251).nbytes == 8 * 251
    transpose = profiling.transpose_cost(17, 41)
    assert (transpose.flop, transpose.nbytes) == (0, 8 * 17 * 41)


def test_matmul_sum_and_histogram_costs():
    mm = profiling.matmul_kernel_cost(4096, 4096, 4096)
    assert mm.flop == 2 * 4096**3 and mm.nbytes == 12 * 4096**2
    assert mm.intensity == pytest.approx(4096 / 6)
    rect = profiling.matmul_kernel_cost(19, 21, 23)  # (19 x 23) @ (23 x 21)
    assert rect.flop == 2 * 19 * 21 * 23
    assert rect.nbytes == 4 * (19 * 23 + 23 * 21 + 19 * 21)
    total = profiling.sum_cost(1001)
    assert (total.flop, total.nbytes, total.intensity) == (1001, 4004, 0.25)
    hist = profiling.histogram_cost(1001, 64, value_bytes=1)
    assert (hist.flop, hist.nbytes) == (0, 1001 + 4 * 64)


@pytest.mark.parametrize("call", [
    lambda: profiling.blur_cost(0, 5), lambda: profiling.transpose_cost(3, -1),
    lambda: profiling.histogram_cost(10, 0), lambda: profiling.saxpy_cost(2.5),
])
def test_costs_reject_bad_sizes(call):
    with pytest.raises(UsageError, match="is not valid"):
        call()


# --------------------------------------------------------------------------- roofline

ROOF = profiling.Roof(peak_gflops=1000.0, bandwidth_gbps=100.0, source="test")  # ridge 10


def run_with(cost, seconds, simulator=False, name="k"):
    return profiling.KernelRun(name, "07", cost,
                               Timing(times=[seconds] * 3, simulator=simulator))


@pytest.mark.parametrize("intensity", [0.1, 1.0, 9.0, 10.0, 50.0])
def test_fraction_is_achieved_over_attainable(intensity):
    achieved = 0.6 * ROOF.attainable(intensity)  # GFLOP/s
    gbps = achieved / intensity
    assert ROOF.fraction(achieved, gbps) == pytest.approx(
        roofline.fraction_of_roof(intensity, achieved, 1000.0, 100.0))
    assert ROOF.fraction(achieved, gbps) == pytest.approx(0.6)


def test_fraction_of_a_kernel_without_flop_is_its_bandwidth_share():
    assert ROOF.fraction(0.0, 80.0) == pytest.approx(0.8)


def test_place_measured_and_simulated_runs():
    cost = roofline.KernelCost(flop=2_000_000_000, nbytes=1_000_000_000)  # 2 FLOP/byte
    p = profiling.place(run_with(cost, 0.02), ROOF)  # 100 GFLOP/s, 50 GB/s
    assert p.measured and p.bound == "memory" and p.intensity == 2.0
    assert p.gflops == pytest.approx(100.0) and p.gbps == pytest.approx(50.0)
    assert p.roof_gflops == pytest.approx(200.0) and p.fraction == pytest.approx(0.5)
    sim = profiling.place(run_with(cost, 0.02, simulator=True), ROOF)
    assert not sim.measured and sim.gflops is None and sim.fraction is None
    assert sim.bound == "memory" and sim.roof_gflops == pytest.approx(200.0)
    big = roofline.KernelCost(flop=10**12, nbytes=10**9)  # 1000 FLOP/byte
    assert profiling.place(run_with(big, 2.0), ROOF).bound == "compute"


def test_above_roof_and_table():
    cost = profiling.copy_kernel_cost(10**8)  # 0.8 GB
    fine = profiling.place(run_with(cost, 0.008, name="fine"), ROOF)  # 100 GB/s: on the roof
    high = profiling.place(run_with(cost, 0.004, name="high"), ROOF)  # 200 GB/s: 2x the roof
    sim = profiling.place(run_with(cost, 0.004, simulator=True, name="sim"), ROOF)
    assert profiling.above_roof([fine, high, sim], 1.15) == [
        "high: 2.00 x its roof (limit 1.15)"]
    table = profiling.format_table([fine, sim])
    assert "fine" in table and "100%" in table and "memory" in table
    sim_line = next(line for line in table.splitlines() if line.startswith("sim"))
    assert sim_line.rstrip().endswith("-")


def test_roof_validates_and_reference_ridge():
    with pytest.raises(UsageError, match="bandwidth_gbps=0"):
        profiling.Roof(1.0, 0.0, "x")
    assert profiling.REFERENCE_ROOF.ridge == pytest.approx(67_000 / 3_350)


# --------------------------------------------------------------------------- occupancy

@pytest.mark.parametrize("registers, blocks, occupancy", [
    (16, 8, 1.0), (32, 8, 1.0), (40, 6, 0.75), (64, 4, 0.5), (128, 2, 0.25), (255, 1, 0.125),
])
def test_register_limited_occupancy_of_256_thread_blocks_on_an_h100(registers, blocks,
                                                                   occupancy):
    occ = profiling.occupancy(256, registers)
    assert occ.blocks_per_sm == blocks and occ.occupancy == occupancy


def test_other_limits_and_what_binds():
    assert profiling.occupancy(256, 32).limited_by == "threads & registers"
    small = profiling.occupancy(32, 16)  # 32 block slots x 1 warp = half the SM's 64 warps
    assert small.blocks_per_sm == 32 and small.occupancy == 0.5
    assert small.limited_by == "block slots"
    shared = profiling.occupancy(256, 32, 48 * 1024)  # 228 KiB // (48 + 1) KiB = 4
    assert shared.blocks_per_sm == 4 and shared.limited_by == "shared memory"
    assert profiling.occupancy(1024, 64).blocks_per_sm == 1  # exactly the 64 K registers
    assert profiling.occupancy(1024, 65).blocks_per_sm == 0  # too many: the launch fails


@pytest.mark.parametrize("threads", [32, 64, 128, 256, 512, 1024])
def test_without_registers_it_is_lesson_07s_calculation(threads):
    limits = profiling.SMLimits(reserved_shared_per_block=0)
    occ = profiling.occupancy(threads, 0, 0, limits)
    assert occ.blocks_per_sm == launch.occupancy_blocks_per_sm(threads)


def test_register_rule_details():
    h100 = profiling.H100_LIMITS
    # 33 registers: 1056 per warp, rounded to 1280: 12 warps per quarter, 48 per SM
    assert profiling.blocks_per_sm_by_registers(128, 33, h100) == 12
    assert profiling.blocks_per_sm_by_registers(128, 0, h100) == h100.max_blocks_per_sm
    with pytest.raises(UsageError, match="registers_per_thread=-1"):
        profiling.blocks_per_sm_by_registers(128, -1)


def test_sm_limits_from_a_device_object():
    class Device:
        MAX_THREADS_PER_MULTIPROCESSOR = 1536
        MAX_BLOCKS_PER_MULTIPROCESSOR = 24
        MAX_REGISTERS_PER_MULTIPROCESSOR = 65536
        MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 102400
        RESERVED_SHARED_MEMORY_PER_BLOCK = 1024
        compute_capability = (8, 9)

        def __getattr__(self, name):  # what an old driver does for an unknown attribute
            raise AttributeError(name)

    limits = profiling.sm_limits(Device(), "RTX test")
    assert (limits.max_threads_per_sm, limits.max_blocks_per_sm) == (1536, 24)
    assert limits.shared_per_sm == 102400 and limits.name == "RTX test"
    assert limits.max_registers_per_block == 65536 and limits.warp_size == 32  # defaults
    assert profiling.occupancy(256, 32, 0, limits).blocks_per_sm == 6  # 1536 // 256


def test_kernel_resources_refuses_the_simulator_and_reads_a_compiled_kernel(monkeypatch):
    from course_utils import cudasim

    monkeypatch.setattr(cudasim, "on_simulator", lambda: True)
    with pytest.raises(CourseError, match="simulator"):
        profiling.kernel_resources(object(), ())

    class Compiled:
        regs_per_thread, shared_mem_per_block, local_mem_per_thread = 40, 2048, 0

        def max_cooperative_grid_blocks(self, threads):
            return 6 * 132

    class Kernel:
        def typeof_pyval(self, value):
            return type(value).__name__

        def compile(self, argtypes):
            assert argtypes == ("int", "float")
            return Compiled()

    monkeypatch.setattr(cudasim, "on_simulator", lambda: False)
    res = profiling.kernel_resources(Kernel(), (1, 2.0))
    assert (res.registers, res.shared_bytes, res.local_bytes) == (40, 2048, 0)
    assert res.driver_blocks_per_sm(256, 132) == 6


# --------------------------------------------------------------------------- knobs


def quick():
    return profiles.sizes("quick", "roofline_profiling")


def test_both_profiles_pass_validation():
    assert profiling.check_config(quick(), simulator=True)["threads"] == 64
    full = profiles.sizes("full", "roofline_profiling")
    checked = profiling.check_config(full, simulator=False)
    assert checked["blocks"] is None and checked["ncu_timeout"] == 90.0


@pytest.mark.parametrize("knob, value, message", [
    ("n", 0, r"N=0 is not valid; it must be an integer >= 1"),
    ("n", "abc", r"N='abc' is not valid"),
    ("threads", 48, r"THREADS=48 is not valid; it must be a power of two"),
    ("threads", 2048, r"THREADS=2048 is not valid.*limit of 1024"),
    ("threads", 0, r"THREADS=0 is not valid"),
    ("blocks", 0, r"BLOCKS=0 is not valid"),
    ("stride", -2, r"STRIDE=-2 is not valid"),
    ("nbins", 2000, r"NBINS=2000 is not valid; it must be an integer between 1 and 1024"),
    ("warmup", -1, r"WARMUP=-1 is not valid; it must be an integer >= 0"),
    ("roof_tolerance", 0.5, r"ROOF_TOLERANCE=0.5 is not valid; it must be a number >= 1.0"),
    ("ncu_timeout", -1, r"NCU_TIMEOUT=-1 is not valid"),
    ("matmul_n", 65, r"MATMUL_N=65 is too big for the CUDA simulator"),
    ("hist_n", 2**31, r"HIST_N=2147483648 is not valid"),
])
def test_bad_knobs_name_the_parameter(knob, value, message):
    cfg = quick()
    cfg[knob] = value
    with pytest.raises(UsageError, match=message):
        profiling.check_config(cfg, simulator=True)


def test_simulator_caps_apply_only_on_the_simulator():
    cfg = quick()
    cfg["n"] = 10_000
    assert profiling.check_config(cfg, simulator=False)["n"] == 10_000
    with pytest.raises(UsageError, match="N=10000 is too big for the CUDA simulator"):
        profiling.check_config(cfg, simulator=True)


# --------------------------------------------------------------------------- Nsight


def test_ncu_and_nsys_command_lines():
    cmd = profiling.ncu_command("s.py", kernel_regex="matmul", count=1, full_set=True,
                                report="out", python="python")
    assert profiling.shell_line(cmd) == ("ncu --target-processes all --set full "
                                         "-k regex:matmul -c 1 -o out python s.py")
    cmd = profiling.ncu_command("s.py", sections=["SpeedOfLight", "Occupancy"],
                                metrics=["a.b", "c.d"], csv_output=True, count=None,
                                python="python")
    assert cmd == ["ncu", "--target-processes", "all", "--section", "SpeedOfLight",
                   "--section", "Occupancy", "--metrics", "a.b,c.d", "--csv", "python",
                   "s.py"]
    assert profiling.ncu_command("s.py")[-2] == sys.executable
    assert profiling.shell_line(profiling.ncu_command("s.py", kernel_regex="copy|matmul",
                                                      python="python")).count("'") == 2
    assert profiling.nsys_command("s.py", report="t", python="python") == [
        "nsys", "profile", "-t", "cuda,nvtx", "-o", "t", "--force-overwrite", "true",
        "python", "s.py"]
    with pytest.raises(UsageError, match="count=0"):
        profiling.ncu_command("s.py", count=0)
    assert all(("__" in m) for m in profiling.NCU_METRICS)


NCU_CSV = '''==PROF== Connected to process 123 (/usr/bin/python3.11)
demo workload done: copy and register-blocked matmul
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",\
"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","123","python3.11","127.0.0.1","cudapy::course_utils::kernels::basics::copy[abi:v1,cw51](\
Array<float, 1, C, mutable, aligned>, Array<float, 1, C, mutable, aligned>)","1","7",\
"(256, 1, 1)","(65536, 1, 1)","0","9.0","Command line profiler metrics",\
"dram__throughput.avg.pct_of_peak_sustained_elapsed","%","91.52"
"1","123","python3.11","127.0.0.1","_ZN6cudapy12course_utils7kernels6memory28make_matmul_\
register_blocked12_3clocals_3e23matmul_register_blockedB2v1E5ArrayIfLi2E1C7mutable7alignedE",\
"1","7","(16, 16, 1)","(8, 8, 1)","0","9.0","Command line profiler metrics",\
"smsp__cycles_elapsed.sum","cycle","1,234,567"
==PROF== Disconnected from process 123
'''


def test_parse_ncu_csv():
    rows = profiling.parse_ncu_csv(NCU_CSV)
    assert rows == [
        {"kernel": "copy", "metric": "dram__throughput.avg.pct_of_peak_sustained_elapsed",
         "unit": "%", "value": 91.52},
        {"kernel": "matmul_register_blocked", "metric": "smsp__cycles_elapsed.sum",
         "unit": "cycle", "value": 1234567.0},
    ]
    assert profiling.parse_ncu_csv("==ERROR== ERR_NVGPUCTRPERM\n") == []


@pytest.mark.parametrize("name, short", [
    ("matmul_tiled", "matmul_tiled"),
    ("cudapy::course_utils::kernels::reductions::sum_atomic[abi:v1](Array<float>)",
     "sum_atomic"),
    ("_ZN6cudapy12course_utils7kernels6basics4copyB2v1B4cw51E5ArrayIfLi1E", "copy"),
])
def test_short_kernel_names(name, short):
    assert profiling.short_kernel_name(name) == short


def test_run_tool_returns_output_and_stops_at_the_timeout(tmp_path):
    ok = profiling.run_tool([sys.executable, "-c", "print('hello')"], timeout=60)
    assert ok.returncode == 0 and ok.output.strip() == "hello" and not ok.timed_out
    slow = profiling.run_tool([sys.executable, "-c", "import time; time.sleep(60)"],
                              timeout=0.5)
    assert slow.timed_out and slow.returncode is None
    with pytest.raises(UsageError, match="timeout=0"):
        profiling.run_tool(["true"], timeout=0)


def test_demo_script_and_its_environment(tmp_path, repo):
    path = profiling.write_demo_script(tmp_path / "sub" / "demo.py")
    text = path.read_text()
    compile(text, str(path), "exec")  # valid Python
    assert "basics.copy" in text and "register_blocked" in text
    env = profiling.script_env(repo)
    assert env["NUMBA_ENABLE_CUDASIM"] == "0"
    assert env["PYTHONPATH"].split(":")[0] == str(repo)
    assert profiling.tool_path("definitely-not-a-profiler-xyz") is None


# --------------------------------------------------------------------------- real GPU


@pytest.mark.gpu
def test_occupancy_model_agrees_with_the_cuda_driver():
    from course_utils import cudasim

    cudasim.configure()
    from numba import cuda

    from course_utils.gpu.kernels import basics, memory

    gpu = cuda.get_current_device()
    limits = profiling.sm_limits(gpu)
    x = cuda.to_device(np.ones(4096, np.float32))
    y = cuda.device_array_like(x)
    basics.copy[16, 256](x, y)
    a = cuda.to_device(np.ones((256, 256), np.float32))
    c = cuda.device_array((256, 256), np.float32)
    for variant in memory.MATMUL_VARIANTS:
        memory.matmul_launch(256, 256, 256, variant)(a, a, c)
    cases = [(basics.copy, (x, y), 256)] + [
        (memory.matmul_launch(256, 256, 256, v).kernel, (a, a, c),
         int(np.prod(memory.matmul_launch(256, 256, 256, v).threads)))
        for v in memory.MATMUL_VARIANTS]
    for kernel, args, threads in cases:
        res = profiling.kernel_resources(kernel, args)
        model = profiling.occupancy(threads, res.registers, res.shared_bytes, limits)
        assert model.blocks_per_sm == res.driver_blocks_per_sm(
            threads, gpu.MULTIPROCESSOR_COUNT), (kernel, res)


@pytest.mark.gpu
def test_demo_workload_runs_on_the_gpu(tmp_path, repo):
    path = profiling.write_demo_script(tmp_path / "demo.py")
    done = subprocess.run([sys.executable, str(path)], cwd=repo, env=profiling.script_env(repo),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo workload done" in done.stdout
