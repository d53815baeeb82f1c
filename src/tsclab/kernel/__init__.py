"""Kernel layer: a bit-exact model of the Linux guest timekeeping core.

Timekeeper (``timekeeping``, ``tk_state``), readers (``readers``, ``vdso``,
``fast_timekeeper``), NTP (``ntp``) and the kernel profiles that select each
version's behaviour (``profiles``).  Knows nothing of hosts or VMMs.
"""
