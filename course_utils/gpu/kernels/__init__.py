"""The CUDA kernels of unit 2 (lessons 07 to 10), written with Numba, one module per lesson.

* ``basics``: lesson 07 (SAXPY, grid-stride loops, a 2-D blur stencil, a copy kernel);
* ``memory``: lesson 08 (transposes, matrix multiplications: naive, tiled, register-blocked);
* ``reductions``: lesson 09 (sums, histograms).

The lessons show each kernel's source (``course_utils.show_source``) and explain it, then
launch, verify and time it; lesson 10 places all of them on the roofline; the unit tests
check every kernel against NumPy on odd sizes, on the simulator. Kept in modules (not in
notebook cells) so that one definition serves all four lessons and the tests.

Import these only after ``course_utils.setup()``: importing them imports ``numba.cuda``,
which fixes the choice between the simulator and a real GPU.
"""

from ... import launch_log as _launch_log

_launch_log.install_from_env()  # HPDL_KERNEL_LOG set: log launches for `hpdl kernels`
