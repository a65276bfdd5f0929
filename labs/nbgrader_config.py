"""nbgrader configuration for the course's labs: copy it into your nbgrader course folder.

The lab masters (labs/solutions/) carry nbgrader's cell metadata, so that
`nbgrader generate_assignment` writes student versions equal to `hpdl student`'s, and
`nbgrader autograde` scores the check cells. See README, "Grading a class (instructors)".
"""

import os

# A failed check ends its cell in an error: nbgrader scores a grade cell by that alone
# (without it, `with check(...)` reports the failure and lets the notebook go on).
os.environ["HPDL_CHECKS_RAISE"] = "1"
# Kernels see the quick sizes unless you ask for the full ones (HPDL_PROFILE=full).
os.environ.setdefault("HPDL_PROFILE", "auto")

c = get_config()  # noqa: F821 - nbgrader provides it when it loads this file

c.CourseDirectory.course_id = "hpdl"
# What replaces an answer in the student version: the same stub as `hpdl student`'s.
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("Lab answer: write your code here")'}
# The released notebook's Colab badge opens the student lab, not the master.
c.GenerateAssignment.post_convert_hook = (
    "course_utils.hpdl.nbgrader.retarget_released_badges")
# Lab 4's checks start several process groups: give a check cell time to finish.
c.Execute.timeout = 900
c.Execute.interrupt_on_timeout = True
