"""tsclab: a laboratory for guest timekeeping across VM pauses, live
migration, snapshot restore and host suspend.

Layers (dependencies point downwards only): ``arith`` -> ``clocksource`` ->
``kernel`` -> ``host`` -> ``nap`` -> ``sim`` -> ``check`` -> ``scenario`` ->
``report``; ``kvm`` and ``guest`` drive real components; ``cli`` is the
``tsclab`` command.
"""

__version__ = "0.1.0"
