"""Explicit-state interleaving explorer: every schedule of a few processes, in a bounded scope.

Mechanism only: it knows processes, actions and predicates, nothing of
timekeeping (the models live in :mod:`tsclab.sim.explore_models`).

A :class:`Model` is

* an initial state: any hashable, immutable value (a frozen dataclass, a tuple);
* ``actions(state)``: every action enabled in ``state``, each an
  :class:`Action` naming its process, a label, the shared variables it reads
  and writes, and the state it leads to.  ``(process, label)`` identifies an
  action within a state and, for the reduction, "the same action" in the
  next state; a guard an action waits on counts as a read;
* named safety properties ``(name, predicate)``, checked in every reached state;
* ``done(state, process)``: whether a process has nothing left it must do,
  for the liveness check.

:func:`explore` runs four passes:

1. **Search.**  Breadth first from the initial state; states are identified
   by hashing (``==``/``hash`` of the state value).  States ``max_depth``
   steps away are kept and checked but not expanded (the *frontier*; a
   result with a frontier is incomplete).
2. **Partial-order reduction** (``reduction=True``): sleep sets
   (Godefroid, *Partial-Order Methods for the Verification of Concurrent
   Systems*, LNCS 1032, 1996, ch. 5).  Two actions are *independent* when
   they belong to different processes and neither writes a variable the
   other reads or writes.  A transition ``t`` sleeps in ``s`` when ``s`` was
   reached by an action ``u`` independent of ``t`` after ``t`` had been
   taken from (or was asleep in) the predecessor ``p``: then
   ``t(s) = t(u(p)) = u(t(p))`` is reached along the other order, and ``t``
   need not be taken again.  Sleep sets prune *transitions*, never states:
   used alone (without persistent sets) they visit every reachable state.
   With state matching, a state reached again with a smaller sleep set has
   its stored set intersected and the actions that woke up taken then
   (Godefroid's fix for state caching).

   *Why this preserves every violation.*  The properties are predicates on
   single states and are checked in every visited state, so a search that
   visits every reachable state finds every violated property; sleep sets
   only skip edges between states that are visited anyway.  This is why
   the reduction is sleep sets and not persistent/stubborn sets: those
   prune states and would need a visibility condition and a cycle proviso
   (the "ignoring" problem) to keep safety violations.  Two checks make the
   argument hold for every run rather than on trust in the footprints:

   * *closure*: ``actions()`` hands over every enabled action with its
     successor, so after the search every edge of every expanded state is
     checked to end in a visited state.  An edge that does not is taken
     then; the result counts these ``repairs`` (a false independence causes
     them; with right footprints the tests, on random programs, never saw
     one).  So the set of visited states - and
     the set of violated properties - is the same with and without the
     reduction, whatever the footprints say;
   * ``check_footprints=True`` verifies, in every expanded state, that
     every pair of actions declared independent commutes and that neither
     disables the other, and raises :class:`FootprintError` otherwise.

3. **Counterexamples**: a breadth-first search over the *full* graph (all
   enabled edges of all expanded states, pruned ones included) gives each
   state its shortest path from the initial state; each violated property
   reports the path to its nearest violating state, so counterexamples are
   minimal and identical with and without the reduction.
4. **Liveness**: the strongly connected components of the full graph.  A
   *terminal* component (every edge stays inside, every state expanded) is
   where an execution that enters it stays forever; a process that is not
   done in any of its states can never become done.  Reported as
   ``livelock:<process>`` with the shortest path to the component's entry
   and the shortest cycle through the entry, or ``deadlock:<process>`` if
   the component is one state with no enabled action.  (Terminal components
   quantify over every way of staying: a component the scheduler *could*
   leave is not a livelock, which is the strong-fairness reading.)

Figures: ``states`` (distinct states visited), ``transitions`` (transitions
taken, i.e. successors generated and looked up), ``enabled_transitions``
(edges of the full graph: what the search takes without reduction), and
``schedules``: the number of distinct paths over the *taken* transitions
from the initial state to a terminal state (one with no enabled action),
computed by dynamic programming over the state graph - not by enumerating
executions.  Without reduction this is the number of complete maximal
interleavings; with it, the number the reduced search represents.  It is
None when the graph has a cycle (infinitely many) or a frontier.

Results hold no wall time and iterate in a fixed order (the order of
``actions()`` and of ``Model.processes``), so a run is deterministic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

S = TypeVar("S", bound=Hashable)

Property = tuple[str, Callable[[S], bool]]
"""A named safety property: ``(name, predicate)``; the predicate holds in good states."""


class Step(NamedTuple):
    """One step of a schedule: which process did what."""

    process: str
    label: str


@dataclass(frozen=True, slots=True)
class Footprint:
    """What the independence relation looks at: process and variables touched."""

    process: str
    label: str
    reads: frozenset[str]
    writes: frozenset[str]

    @property
    def step(self) -> Step:
        return Step(self.process, self.label)


def independent(a: Footprint, b: Footprint) -> bool:
    """Different processes, and neither writes what the other reads or writes."""
    if a.process == b.process:
        return False
    return a.writes.isdisjoint(b.reads) and a.writes.isdisjoint(b.writes) and b.writes.isdisjoint(a.reads)


@dataclass(frozen=True, slots=True)
class Action(Generic[S]):
    """An enabled action: its process, label, footprint and the state it leads to."""

    process: str
    label: str
    reads: frozenset[str]
    writes: frozenset[str]
    next_state: S

    @property
    def step(self) -> Step:
        return Step(self.process, self.label)

    @property
    def footprint(self) -> Footprint:
        return Footprint(self.process, self.label, self.reads, self.writes)


def action(
    process: str, label: str, next_state: S, *, reads: Iterable[str] = (), writes: Iterable[str] = ()
) -> Action[S]:
    """Shorthand for :class:`Action` with the variable sets given as any iterables."""
    return Action(process, label, frozenset(reads), frozenset(writes), next_state)


@dataclass(frozen=True)
class Model(Generic[S]):
    """A closed system of processes: see the module docstring."""

    name: str
    initial: S
    actions: Callable[[S], list[Action[S]]]
    processes: tuple[str, ...]
    done: Callable[[S, str], bool]
    properties: tuple[Property[S], ...] = ()
    describe: Callable[[S], str] = repr


@dataclass(frozen=True, slots=True)
class Counterexample:
    """A minimal path to a violation.

    ``steps`` leads from the initial state to the first violating state (for
    a livelock: to the entry of the component it cannot leave); ``cycle``
    is, for a livelock, the steps that bring the entry back to itself.
    ``final_state`` describes the last state of ``steps``.
    """

    property: str
    steps: tuple[Step, ...]
    final_state: str
    cycle: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class ExploreResult:
    """What :func:`explore` found, and its figures (see the module docstring)."""

    model: str
    reduction: bool
    max_depth: int
    states: int
    transitions: int
    enabled_transitions: int
    schedules: int | None
    frontier: int
    repairs: int
    violations: tuple[Counterexample, ...]

    @property
    def complete(self) -> bool:
        """No state was left unexpanded at the depth bound."""
        return self.frontier == 0

    @property
    def violated(self) -> frozenset[str]:
        """Names of the violated properties (``livelock:<p>``/``deadlock:<p>`` included)."""
        return frozenset(cx.property for cx in self.violations)

    @property
    def reduction_factor(self) -> float:
        """Transitions without reduction over transitions taken (1.0 without reduction).

        A figure for reports; without reduction the search takes exactly
        the edges of the full graph, so no second run is needed.
        """
        return self.enabled_transitions / self.transitions if self.transitions else 1.0

    def counterexample(self, name: str) -> Counterexample:
        """The counterexample of one violated property."""
        for cx in self.violations:
            if cx.property == name:
                return cx
        raise KeyError(f"{self.model}: property {name!r} is not violated")


class FootprintError(ValueError):
    """Two actions declared independent do not commute (or one disables the other)."""


# --- search ------------------------------------------------------------------

Sleep = dict[Step, Footprint]


class _Search(Generic[S]):
    """One exploration: the state table, the recorded graph, the work queue."""

    def __init__(self, model: Model[S], max_depth: int, reduction: bool, check_footprints: bool) -> None:
        self.model = model
        self.max_depth = max_depth
        self.reduction = reduction
        self.check_footprints = check_footprints
        self.states: list[S] = []
        self.index: dict[S, int] = {}
        self.depth: list[int] = []
        # Every enabled action of an expanded state (None: not expanded).
        self.edges: list[list[Action[S]] | None] = []
        self.fired: list[set[Step]] = []
        # The sleep set a state was (or will be) processed with; None before any arrival.
        self.sleep: list[Sleep | None] = []
        self.violating: dict[str, list[int]] = {name: [] for name, _ in model.properties}
        self.queue: deque[tuple[int, Sleep | None]] = deque()
        self.transitions = 0
        self.repairs = 0

    def intern(self, state: S, depth: int) -> tuple[int, bool]:
        """The id of ``state``, adding (and checking) it if new."""
        sid = self.index.get(state)
        if sid is not None:
            return sid, False
        sid = len(self.states)
        self.index[state] = sid
        self.states.append(state)
        self.depth.append(depth)
        self.edges.append(None)
        self.fired.append(set())
        self.sleep.append(None)
        for name, holds in self.model.properties:
            if not holds(state):
                self.violating[name].append(sid)
        return sid, True

    def run(self) -> None:
        root, _ = self.intern(self.model.initial, 0)
        self.sleep[root] = {}
        self.queue.append((root, None))
        while True:
            while self.queue:
                sid, wake = self.queue.popleft()
                self.process(sid, wake)
            if not self.repair():
                return

    def enabled(self, sid: int) -> list[Action[S]]:
        """Expand a state once: list, validate and record its actions."""
        recorded = self.edges[sid]
        if recorded is not None:
            return recorded
        acts = self.model.actions(self.states[sid])
        _validate(self.model, self.states[sid], acts)
        if self.check_footprints:
            _check_footprints(self.model, self.states[sid], acts)
        self.edges[sid] = acts
        return acts

    def process(self, sid: int, wake: Sleep | None) -> None:
        """Take the actions of ``sid`` that are not asleep.

        ``wake`` is None for the first visit (sleep set: the intersection of
        all arrivals so far); otherwise the sleep set of a later arrival,
        whose dropped actions are taken now.
        """
        if self.depth[sid] >= self.max_depth:
            return
        acts = self.enabled(sid)
        asleep = self.sleep[sid] if wake is None else wake
        assert asleep is not None
        if not self.reduction:
            asleep = {}
        taken_here: list[Footprint] = []
        for act in acts:
            if act.step in asleep or act.step in self.fired[sid]:
                continue
            proposal = self.proposal(asleep, taken_here, act.footprint) if self.reduction else {}
            taken_here.append(act.footprint)
            self.fire(sid, act, proposal)

    @staticmethod
    def proposal(asleep: Sleep, taken_here: list[Footprint], by: Footprint) -> Sleep:
        """The successor's sleep set: asleep or already taken here, and independent of ``by``."""
        out = {step: fp for step, fp in asleep.items() if independent(fp, by)}
        out.update((fp.step, fp) for fp in taken_here if independent(fp, by))
        return out

    def fire(self, sid: int, act: Action[S], proposal: Sleep) -> None:
        self.fired[sid].add(act.step)
        self.transitions += 1
        tid, new = self.intern(act.next_state, self.depth[sid] + 1)
        stored = self.sleep[tid]
        if new or stored is None:
            self.sleep[tid] = proposal
            self.queue.append((tid, None))
        elif self.edges[tid] is None:
            # Queued, not yet processed: its sleep set is the intersection of arrivals.
            self.sleep[tid] = {k: v for k, v in stored.items() if k in proposal}
        else:
            woken = [k for k in stored if k not in proposal]
            if woken:
                self.sleep[tid] = {k: v for k, v in stored.items() if k in proposal}
                self.queue.append((tid, proposal))

    def repair(self) -> bool:
        """Closure check: follow any recorded edge whose target was never visited."""
        repaired = False
        for sid in range(len(self.states)):
            acts = self.edges[sid]
            if acts is None:
                continue
            for act in acts:
                if act.next_state not in self.index:
                    self.repairs += 1
                    repaired = True
                    self.fire(sid, act, {})
        return repaired


def _validate(model: Model[S], state: S, acts: list[Action[S]]) -> None:
    seen: set[Step] = set()
    for act in acts:
        if act.process not in model.processes:
            raise ValueError(f"{model.name}: action {act.step} of an unknown process")
        if act.step in seen:
            raise ValueError(f"{model.name}: two enabled actions named {act.step} in {model.describe(state)}")
        seen.add(act.step)


def _check_footprints(model: Model[S], state: S, acts: list[Action[S]]) -> None:
    """Every independent pair commutes, and neither disables the other."""
    for i, a in enumerate(acts):
        for b in acts[i + 1 :]:
            if not independent(a.footprint, b.footprint):
                continue
            after_a = {x.step: x for x in model.actions(a.next_state)}
            after_b = {x.step: x for x in model.actions(b.next_state)}
            b2, a2 = after_a.get(b.step), after_b.get(a.step)
            ok = (
                b2 is not None
                and a2 is not None
                and b2.footprint == b.footprint
                and a2.footprint == a.footprint
                and b2.next_state == a2.next_state
            )
            if not ok:
                raise FootprintError(
                    f"{model.name}: {a.step} and {b.step} are declared independent but do not commute "
                    f"in {model.describe(state)}"
                )


# --- analysis over the full graph --------------------------------------------


@dataclass(frozen=True, slots=True)
class _Graph:
    """The full graph by ids: every enabled edge of every expanded state."""

    succ: list[list[tuple[Step, int]] | None]  # None: frontier (not expanded)
    dist: list[int]
    parent: list[tuple[int, Step] | None]
    order: list[int]  # BFS discovery rank, for deterministic tie-breaks


def _full_graph(search: _Search[S]) -> _Graph:
    succ: list[list[tuple[Step, int]] | None] = []
    for acts in search.edges:
        succ.append(None if acts is None else [(a.step, search.index[a.next_state]) for a in acts])
    n = len(succ)
    dist, order = [-1] * n, [-1] * n
    parent: list[tuple[int, Step] | None] = [None] * n
    dist[0], order[0] = 0, 0
    queue, rank = deque([0]), 1
    while queue:
        v = queue.popleft()
        for step, w in succ[v] or ():
            if dist[w] == -1:
                dist[w], order[w], parent[w] = dist[v] + 1, rank, (v, step)
                rank += 1
                queue.append(w)
    return _Graph(succ, dist, parent, order)


def _path_to(graph: _Graph, target: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    node = target
    while (link := graph.parent[node]) is not None:
        node, step = link
        steps.append(step)
    return tuple(reversed(steps))


def _nearest(graph: _Graph, ids: Iterable[int]) -> int:
    return min(ids, key=lambda i: (graph.dist[i], graph.order[i]))


def _safety_counterexamples(search: _Search[S], graph: _Graph) -> list[Counterexample]:
    out = []
    for name, _ in search.model.properties:
        ids = search.violating[name]
        if ids:
            target = _nearest(graph, ids)
            steps = _path_to(graph, target)
            out.append(Counterexample(name, steps, search.model.describe(search.states[target])))
    return out


def strongly_connected_components(succ: list[list[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative; each component sorted, in completion order."""
    n = len(succ)
    index_of, low = [-1] * n, [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index_of[root] != -1:
            continue
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            if i < len(succ[v]):
                work[-1] = (v, i + 1)
                w = succ[v][i]
                if index_of[w] == -1:
                    index_of[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index_of[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index_of[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                components.append(sorted(component))
    return components


def _terminal_components(graph: _Graph) -> list[list[int]]:
    """Components no edge leaves and whose states were all expanded."""
    plain = [[w for _, w in edges or ()] for edges in graph.succ]
    terminal = []
    for component in strongly_connected_components(plain):
        members = set(component)
        if all(graph.succ[v] is not None and all(w in members for w in plain[v]) for v in component):
            terminal.append(component)
    return terminal


def _cycle_through(graph: _Graph, entry: int, members: set[int]) -> tuple[Step, ...]:
    """Shortest cycle from ``entry`` back to itself inside ``members`` (empty if none)."""
    back: dict[int, tuple[int, Step] | None] = {entry: None}
    queue = deque([entry])
    while queue:
        v = queue.popleft()
        for step, w in graph.succ[v] or ():
            if w == entry:
                steps = [step]
                node = v
                while (link := back[node]) is not None:
                    node, prev_step = link
                    steps.append(prev_step)
                return tuple(reversed(steps))
            if w in members and w not in back:
                back[w] = (v, step)
                queue.append(w)
    return ()


def _liveness_counterexamples(search: _Search[S], graph: _Graph) -> list[Counterexample]:
    model = search.model
    best: dict[str, tuple[int, list[int]]] = {}
    for component in _terminal_components(graph):
        entry = _nearest(graph, component)
        for process in model.processes:
            if any(model.done(search.states[v], process) for v in component):
                continue
            if process not in best or (graph.dist[entry], graph.order[entry]) < (
                graph.dist[best[process][0]],
                graph.order[best[process][0]],
            ):
                best[process] = (entry, component)
    out = []
    for process in model.processes:
        if process not in best:
            continue
        entry, component = best[process]
        stuck = len(component) == 1 and not graph.succ[entry]
        kind = "deadlock" if stuck else "livelock"
        out.append(
            Counterexample(
                f"{kind}:{process}",
                _path_to(graph, entry),
                model.describe(search.states[entry]),
                _cycle_through(graph, entry, set(component)),
            )
        )
    return out


def _count_schedules(search: _Search[S]) -> int | None:
    """Paths over taken transitions from the initial state to terminal states (None if infinite)."""
    n = len(search.states)
    if any(acts is None for acts in search.edges):
        return None  # a frontier: the count would be of truncated paths
    taken: list[list[int]] = []
    for sid in range(n):
        acts = search.edges[sid] or []
        taken.append([search.index[a.next_state] for a in acts if a.step in search.fired[sid]])
    indegree = [0] * n
    for targets in taken:
        for t in targets:
            indegree[t] += 1
    ready = deque(v for v in range(n) if indegree[v] == 0)
    topo: list[int] = []
    while ready:
        v = ready.popleft()
        topo.append(v)
        for t in taken[v]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if len(topo) < n:
        return None  # a cycle: infinitely many paths
    paths = [0] * n
    for v in reversed(topo):
        terminal = not search.edges[v]
        paths[v] = 1 if terminal else sum(paths[t] for t in taken[v])
    return paths[0]


def explore(
    model: Model[S], *, max_depth: int, reduction: bool, check_footprints: bool = False
) -> ExploreResult:
    """Explore every interleaving of ``model`` up to ``max_depth`` steps; see the module docstring."""
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    search = _Search(model, max_depth, reduction, check_footprints)
    search.run()
    graph = _full_graph(search)
    violations = _safety_counterexamples(search, graph) + _liveness_counterexamples(search, graph)
    return ExploreResult(
        model=model.name,
        reduction=reduction,
        max_depth=max_depth,
        states=len(search.states),
        transitions=search.transitions,
        enabled_transitions=sum(len(acts) for acts in search.edges if acts is not None),
        schedules=_count_schedules(search),
        frontier=sum(1 for acts in search.edges if acts is None),
        repairs=search.repairs,
        violations=tuple(violations),
    )


def render_counterexample(cx: Counterexample) -> str:
    """The counterexample as text: one step a line, then the final state (and the cycle)."""
    width = max((len(step.process) for step in (*cx.steps, *cx.cycle)), default=0)
    lines = [f"{cx.property}: violated after {len(cx.steps)} steps"]
    lines += [f"  {i:3d}. {step.process:<{width}}  {step.label}" for i, step in enumerate(cx.steps, 1)]
    lines.append(f"  state: {cx.final_state}")
    if cx.cycle:
        lines.append(f"  then forever ({len(cx.cycle)} steps a round):")
        lines += [f"  {i:3d}. {step.process:<{width}}  {step.label}" for i, step in enumerate(cx.cycle, 1)]
    return "\n".join(lines)
