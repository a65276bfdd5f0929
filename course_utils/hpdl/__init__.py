"""The ``hpdl`` command (the course's tooling): run, grade, student, compare, site, colab, env.

It may import anything in course_utils; nothing outside hpdl/ imports it (tests excepted).
"""
