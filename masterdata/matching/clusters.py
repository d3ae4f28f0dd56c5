"""Pairs grouped into clusters a steward reviews and merges as one, and the sites pattern.

A cluster is a connected component of the matched pairs, checked to hold together: every
two of its records, matched or not, are scored, and no two may have evidence against being
one organisation (their fields' weights, without the prior, summing below zero: a
different tax id, a different building and a different phone outweighing a similar name).
A component that does not hold together loses its weakest link until every part does;
chains through a record with little on it (A-B and B-C matched, A and C conflicting) are
what this breaks.

"Sites of one organisation": the names agree (same, close or one inside the other) but the
street addresses, both given, are different buildings. For an ERP these are separate bill-to
customers, so such a pair is flagged and left out of clusters and merges by default, whatever
else agrees: one organisation's sites often share its phone, tax id and domain. A customer
that moved, with its old address still in one system, looks the same; the steward who knows
merges the flagged pair from its own page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from masterdata.matching.compare import NAME, address_level
from masterdata.matching.normalize import Record

MAX_CHECKED = 60  # a component larger than this is cut at its weakest links first


def is_sites(levels: Sequence[int], a: Record, b: Record) -> bool:
    return (
        levels[NAME] in (0, 1, 2)
        and bool(a.address.building_key and b.address.building_key)
        and address_level(a.address, b.address) in (2, 3)
        and not (a.postcode and a.postcode == b.postcode)
    )


def _components(nodes: Iterable[int], edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    parent: dict[int, int] = {node: node for node in nodes}

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = defaultdict(list)
    for node in parent:
        groups[find(node)].append(node)
    return [sorted(group) for group in groups.values()]


def clusters(
    edges: dict[tuple[int, int], float],
    evidence_weight: Callable[[int, int], float],
) -> list[list[int]]:
    """Groups of at least two records that hold together, each sorted, smallest first.

    ``edges`` maps a matched pair (a < b) to its match weight; ``evidence_weight(a, b)``
    scores any two records (their fields' bits without the prior).
    """
    nodes = {node for pair in edges for node in pair}
    groups = _components(nodes, edges)
    group_of = {node: index for index, group in enumerate(groups) for node in group}
    links_of: list[dict[tuple[int, int], float]] = [{} for _ in groups]
    for pair, weight in edges.items():
        links_of[group_of[pair[0]]][pair] = weight
    pending = list(zip(groups, links_of, strict=True))
    done: list[list[int]] = []
    while pending:
        group, links = pending.pop()
        if len(group) < 2:
            continue
        if len(group) == 2 or (
            len(group) <= MAX_CHECKED
            and all(
                evidence_weight(a, b) >= 0
                for i, a in enumerate(group)
                for b in group[i + 1 :]
                if (a, b) not in links
            )
        ):
            done.append(group)
            continue
        weakest = min(links, key=lambda pair: (links[pair], pair))
        del links[weakest]
        members = set(group)
        for part in _components(members, links):
            part_set = set(part)
            pending.append((part, {p: w for p, w in links.items() if p[0] in part_set}))
    return sorted(done)
