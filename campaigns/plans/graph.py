"""Stage 3b of validation: the step graph (targets, reachability, loops, threading, endings)."""

from collections import deque
from dataclasses import dataclass

from campaigns.plans.problems import (
    Path,
    PlanError,
    did_you_mean,
    json_pointer,
    show_value,
    with_article,
)
from campaigns.plans.spec import SMS_TRIGGERS, STEP_TYPES, TIMEOUT_TRIGGERS, TRIGGERS


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    pointer: str
    waits: bool  # does taking this edge imply time passes (a wait step or a timeout)?
    trigger: str = "next"


def _edges(steps: dict) -> list[_Edge]:
    edges: list[_Edge] = []
    for name, step in steps.items():
        if not isinstance(step, dict):
            continue
        kind = step.get("type")
        base: Path = ("steps", name)
        follow_next = kind in ("email", "wait", "sms") or kind not in STEP_TYPES
        if follow_next and isinstance(step.get("next"), str):
            edges.append(_Edge(name, step["next"], json_pointer((*base, "next")), kind == "wait"))
        on = step.get("on")
        if (kind in STEP_TYPES and kind not in ("email", "sms")) or not isinstance(on, dict):
            continue
        known = SMS_TRIGGERS if kind == "sms" else TRIGGERS
        for trigger, value in on.items():
            if trigger not in known:
                continue
            is_timeout = trigger in TIMEOUT_TRIGGERS
            # A target written in the wrong shape still counts here, so one mistake does not
            # also make its target look unreachable.
            if isinstance(value, str):
                pointer = json_pointer((*base, "on", trigger))
                edges.append(_Edge(name, value, pointer, is_timeout, trigger))
            elif isinstance(value, dict) and isinstance(value.get("to"), str):
                pointer = json_pointer((*base, "on", trigger, "to"))
                edges.append(_Edge(name, value["to"], pointer, is_timeout, trigger))
    return edges


def _reachable(start: str, successors: dict[str, list[_Edge]], avoid: str | None = None) -> dict:
    """Breadth-first from ``start``: each reached step → the step it was first reached from."""
    parents: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for edge in successors.get(current, []):
            if edge.target != avoid and edge.target not in parents:
                parents[edge.target] = current
                queue.append(edge.target)
    return parents


def _path_to(parents: dict[str, str | None], target: str) -> list[str]:
    path: list[str] = []
    node: str | None = target
    while node is not None:
        path.append(node)
        node = parents[node]
    return path[::-1]


def _strongly_connected(nodes: list[str], successors: dict[str, list[_Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (plans are small, but recursion limits are not ours to spend)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, edge_index = work.pop()
            if edge_index == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = successors.get(node, [])
            if edge_index < len(edges):
                work.append((node, edge_index + 1))
                child = edges[edge_index].target
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _loop_errors(steps: dict, edges: list[_Edge]) -> list[PlanError]:
    instant: dict[str, list[_Edge]] = {}
    for edge in edges:
        if not edge.waits:
            instant.setdefault(edge.source, []).append(edge)
    errors = []
    for component in _strongly_connected(sorted(steps), instant):
        members = set(component)
        first = min(component)
        if len(component) == 1 and not any(e.target == first for e in instant.get(first, [])):
            continue
        # Shortest loop from `first` back to itself, staying inside the component.
        came_by: dict[str, _Edge] = {}
        queue = deque([first])
        closing: _Edge | None = None
        while queue and closing is None:
            current = queue.popleft()
            for edge in instant.get(current, []):
                if edge.target == first:
                    closing = edge
                    break
                if edge.target in members and edge.target not in came_by:
                    came_by[edge.target] = edge
                    queue.append(edge.target)
        assert closing is not None
        loop = [closing]
        while loop[0].source != first:
            loop.insert(0, came_by[loop[0].source])
        names = " → ".join([first, *(edge.target for edge in loop)])
        errors.append(
            PlanError(
                loop[0].pointer,
                f"loop with no wait: {names}; a lead could go round it again and again without "
                'any delay: put a wait step or a timeout ("after") in the loop',
            )
        )
    return errors


_FINAL_TRIGGERS = {
    "bounce": "a bounced address cannot be emailed again",
    "unsubscribe": "a lead who unsubscribed is never emailed again",
}


def _final_trigger_errors(steps: dict, edges: list[_Edge]) -> list[PlanError]:
    """Bounces and unsubscribes end the journey whatever the plan says; the plan only labels it."""
    errors = []
    for edge in edges:
        if edge.trigger not in _FINAL_TRIGGERS:
            continue
        kind = steps[edge.target].get("type") if isinstance(steps[edge.target], dict) else None
        if kind in STEP_TYPES and kind != "end":
            errors.append(
                PlanError(
                    edge.pointer,
                    f'{_FINAL_TRIGGERS[edge.trigger]}, so "{edge.trigger}" must lead to an end '
                    f"step; {show_value(edge.target)} is {with_article(kind)} step",
                )
            )
    return errors


def graph_errors(plan: dict, steps: dict) -> list[PlanError]:
    errors: list[PlanError] = []
    names = set(steps)
    edges = _edges(steps)
    complete = True  # is the graph as the author meant it? if not, skip whole-graph verdicts

    valid_edges = []
    for edge in edges:
        if edge.target in names:
            valid_edges.append(edge)
        else:
            complete = False
            message = f"no step named {show_value(edge.target)}{did_you_mean(edge.target, names)}"
            errors.append(PlanError(edge.pointer, message))
    successors: dict[str, list[_Edge]] = {}
    for edge in valid_edges:
        successors.setdefault(edge.source, []).append(edge)
    for name, step in steps.items():
        kind = step.get("type") if isinstance(step, dict) else None
        if kind not in STEP_TYPES or (kind != "end" and not successors.get(name)):
            complete = False

    errors.extend(_loop_errors(steps, valid_edges))
    errors.extend(_final_trigger_errors(steps, valid_edges))

    start = plan.get("start")
    reached: dict[str, str | None] = {}
    if isinstance(start, str) and start in names:
        reached = _reachable(start, successors)
        for name in sorted(names - set(reached)):
            errors.append(
                PlanError(
                    json_pointer(("steps", name)),
                    f"unreachable: no transition from the start step {show_value(start)} leads here",
                )
            )

    for name, step in steps.items():
        if not isinstance(step, dict) or step.get("type") != "email":
            continue
        target = step.get("thread_with")
        if not isinstance(target, str):
            continue
        pointer = json_pointer(("steps", name, "thread_with"))
        other = steps.get(target)
        if target not in names:
            message = f"no step named {show_value(target)}{did_you_mean(target, names)}"
            errors.append(PlanError(pointer, message))
        elif target == name:
            errors.append(PlanError(pointer, "a step cannot thread with itself"))
        elif not isinstance(other, dict) or other.get("type") not in STEP_TYPES:
            pass  # that step's own error says what is wrong with it
        elif other["type"] != "email":
            errors.append(
                PlanError(
                    pointer,
                    f"thread_with must name an email step; {show_value(target)} is "
                    f"{with_article(other['type'])} step",
                )
            )
        elif name in reached and target != start:
            detour = _reachable(start, successors, avoid=target)
            if name in detour:
                route = " → ".join(_path_to(detour, name))
                errors.append(
                    PlanError(
                        pointer,
                        f"{show_value(target)} does not always run before this step: a lead can get "
                        f"here by {route} without it; thread with a step that every path to "
                        "this one passes through",
                    )
                )

    if complete and reached:
        ends = {n for n, s in steps.items() if isinstance(s, dict) and s.get("type") == "end"}
        predecessors: dict[str, list[str]] = {}
        for edge in valid_edges:
            predecessors.setdefault(edge.target, []).append(edge.source)
        finishing = set(ends)
        queue = deque(ends)
        while queue:
            for source in predecessors.get(queue.popleft(), []):
                if source not in finishing:
                    finishing.add(source)
                    queue.append(source)
        for name in sorted(set(reached) - finishing):
            errors.append(
                PlanError(
                    json_pointer(("steps", name)),
                    "no path from this step reaches an end step, so a lead who gets here would "
                    "never finish; add a way out to an end step",
                )
            )
    return errors
