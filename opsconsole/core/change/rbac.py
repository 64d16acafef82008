"""Who may do what: principals, people, roles and scoped grants, read from ``inventory/rbac.yml``.

Why this module exists: every change goes through a request and approvals, from two faces (the terminal
and Slack) and, on the sandbox, from a cast of pretend colleagues. The approval workflow must know, for a
principal and for what a request touches, whether they may view, request, approve or break glass — and
it must count *people*, not accounts: the same SRE approving once in Slack and once in the terminal is
one vote. This module answers those questions from data, once, for every face.

How to use it::

    directory = Directory.load(inventory_dir, sandbox=True, fleet=fleet)
    me = directory.os_user(getpass.getuser())                 # or directory.slack_user(team, user)
    scope = Scope.of(environments=["prod"], regions=["eu-west-1", "eu-central-1"])
    if me.may(Permission.APPROVE, scope): ...
    directory.eligible(Permission.APPROVE, scope)             # ["bob", "carol", "erin"]

Model:

* A **principal** is what someone comes as: ``os:<user>`` in the terminal, ``slack:<team>:<user>`` in
  Slack. Principals map to one **person** (the canonical name votes are counted by). A principal that
  maps to nobody is unknown, and an unknown principal is a viewer; its person is the principal itself,
  so two unknown accounts are never merged into one voter.
* **Roles** are ordered: viewer < operator (may request changes) < approver (may approve) < admin (may
  break glass, and do everything below). Permissions map to the lowest role that has them.
* A **grant** gives a role in some environments and regions (``None`` = all). A person's role for a
  :class:`Scope` (what a request touches) is the highest role that their grants give them in *every*
  environment × region of the scope; each (environment, region) may be covered by a different grant of
  that role or higher. With no covering grant the role is viewer: everyone may look.
* The **sandbox cast** (``sandbox_cast`` in rbac.yml) exists only when the directory is loaded with
  ``sandbox=True``; ``opsconsole --as NAME`` acts as one of them (:meth:`Directory.cast_member`). On the
  sandbox each cast member is also the OS user of their name.

Pure data and lookups: no I/O beyond :meth:`Directory.load`, no clock, no face.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.inventory import _Node, _read_yaml, load_inventory
from opsconsole.core.fleet.model import Environment, Fleet, Geography

__all__ = [
    "PERMISSION_ROLE",
    "Directory",
    "Grant",
    "Identity",
    "Permission",
    "Person",
    "Role",
    "Scope",
]

RBAC_FILE = "rbac.yml"
#: Slack ids as Slack prints them: a workspace (team) id and a user id, e.g. ``T0SANDBOX:U0BOB``.
_SLACK_ID = re.compile(r"^[A-Z0-9]+:[A-Z0-9]+$")
#: OS user names: what ``getpass.getuser()`` returns; no spaces and no colon (a colon separates a
#: principal's face from its id).
_OS_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]*$")
#: Registers a principal for a person, refusing one already mapped to someone else.
_Claim = Callable[[str, str, _Node], None]


class Role(StrEnum):
    """A role; roles are ordered (see :attr:`rank`), each may do what the ones below it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer up to 3 for admin."""
        return _ROLE_ORDER.index(self)

    def at_least(self, other: Role) -> bool:
        """True if this role may do everything ``other`` may."""
        return self.rank >= other.rank


_ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN)


class Permission(StrEnum):
    VIEW = "view"
    REQUEST = "request"
    APPROVE = "approve"
    BREAK_GLASS = "break_glass"


#: The lowest role that holds each permission.
PERMISSION_ROLE: Mapping[Permission, Role] = {
    Permission.VIEW: Role.VIEWER,
    Permission.REQUEST: Role.OPERATOR,
    Permission.APPROVE: Role.APPROVER,
    Permission.BREAK_GLASS: Role.ADMIN,
}


@dataclass(frozen=True)
class Scope:
    """What a request touches: environment names (``prod``…) and region ids.

    An empty set leaves that dimension open: ``Scope.of(environments=["prod"])`` asks about prod in
    any region (a grant for prod in one region covers it).
    """

    environments: frozenset[str]
    regions: frozenset[str]

    @classmethod
    def of(cls, *, environments: Iterable[str] = (), regions: Iterable[str] = ()) -> Scope:
        return cls(frozenset(str(e) for e in environments), frozenset(regions))

    def describe(self) -> str:
        """``prod in eu-central-1, eu-west-1`` — for messages."""
        envs = ", ".join(sorted(self.environments)) or "any environment"
        regions = ", ".join(sorted(self.regions)) or "any region"
        return f"{envs} in {regions}"


@dataclass(frozen=True)
class Grant:
    """A role in some environments and regions; ``None`` means all of them."""

    role: Role
    environments: frozenset[str] | None = None
    regions: frozenset[str] | None = None

    def covers(self, environment: str | None, region: str | None) -> bool:
        """Whether the grant applies at one (environment, region); ``None`` is "any" and always matches."""
        return (environment is None or self.environments is None or environment in self.environments) and (
            region is None or self.regions is None or region in self.regions
        )


@dataclass(frozen=True)
class Identity:
    """A principal resolved to a person and their grants."""

    #: The canonical name votes are counted by: one person via the terminal and via Slack is one person.
    person: str
    #: What they came as: ``os:alice``, ``slack:T0SANDBOX:U0BOB`` (``person:<name>`` when looked up by name).
    principal: str
    grants: tuple[Grant, ...] = ()
    #: False for a principal rbac.yml does not map to anyone (a viewer).
    known: bool = True

    def role_for(self, scope: Scope) -> Role:
        """The highest role held in every environment × region of ``scope`` (viewer if none)."""
        environments: Iterable[str | None] = scope.environments or (None,)
        regions: Iterable[str | None] = scope.regions or (None,)
        role = Role.ADMIN
        for env in environments:
            for region in regions:
                here = max(
                    (g.role for g in self.grants if g.covers(env, region)),
                    key=lambda r: r.rank,
                    default=Role.VIEWER,
                )
                if here.rank < role.rank:
                    role = here
        return role

    def may(self, permission: Permission, scope: Scope) -> bool:
        return self.role_for(scope).at_least(PERMISSION_ROLE[permission])


@dataclass(frozen=True)
class Person:
    """One person of rbac.yml (or of the sandbox cast): how they reach opsconsole and what they hold."""

    name: str
    os_users: tuple[str, ...]
    slack: tuple[str, ...]
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class Directory:
    """Everyone rbac.yml knows (plus the sandbox cast, on the sandbox), by person and by principal."""

    people: Mapping[str, Person]
    #: ``os:<user>`` / ``slack:<team>:<user>`` → person name.
    principals: Mapping[str, str]
    #: Names of the sandbox cast (empty unless loaded with ``sandbox=True``).
    cast: tuple[str, ...] = ()
    sandbox: bool = False

    @classmethod
    def load(cls, inventory_dir: Path, *, sandbox: bool, fleet: Fleet | None = None) -> Directory:
        """Read and validate ``rbac.yml`` next to ``hosts.yml``.

        Args:
            inventory_dir: The inventory directory (or its ``hosts.yml``).
            sandbox: Whether opsconsole runs on the sandbox; only then does the cast exist.
            fleet: The loaded inventory, to check region ids and expand geographies; loaded from
                ``inventory_dir`` when not given.

        Raises:
            InventoryError: naming the file, the key path and what was expected — an unknown role,
                environment or region, a malformed Slack id, a principal mapped to two people.
        """
        root = inventory_dir if inventory_dir.is_dir() else inventory_dir.parent
        if fleet is None:
            fleet = load_inventory(root)
        path = root / RBAC_FILE
        data = _read_yaml(path, str(path))
        top = _Node(str(path), "", data, getattr(data, "line", 1))
        _only_keys(top, {"version", "people", "sandbox_cast"})
        version = top.get("version")
        if version.as_int() != 1:
            raise version.fail("1", str(version.value))

        people: dict[str, Person] = {}
        owner: dict[str, str] = {}
        owner_node: dict[str, _Node] = {}

        def claim(principal: str, person: str, node: _Node) -> None:
            if principal in owner and owner[principal] != person:
                raise node.fail(
                    "each principal mapped to one person",
                    f"{principal} also mapped to {owner[principal]} ({owner_node[principal].path})",
                )
            owner[principal] = person
            owner_node[principal] = node

        people_node = top.opt("people")
        if people_node is not None and people_node.value is not None:
            for name, person_node in people_node.items():
                people[name] = _person(name, person_node, fleet, claim)

        all_cast: list[str] = []
        cast_people: dict[str, Person] = {}
        cast_owner: dict[str, str] = {}

        def cast_claim(principal: str, person: str, node: _Node) -> None:
            # The cast shares the namespace of principals with people: a Slack id cannot be both a cast
            # member and a real colleague, on the sandbox or not (the file is checked the same way on both).
            claim(principal, person, node)
            cast_owner[principal] = person

        cast_node = top.opt("sandbox_cast")
        if cast_node is not None and cast_node.value is not None:
            for name, member_node in cast_node.items():
                if name in people:
                    raise member_node.fail("a cast name that is not also under people", name)
                all_cast.append(name)
                cast_people[name] = _cast_member(name, member_node, fleet, cast_claim)

        principals = {p: n for p, n in owner.items() if p not in cast_owner}
        if sandbox:
            people.update(cast_people)
            principals.update(cast_owner)
        return cls(
            people=people,
            principals=principals,
            cast=tuple(sorted(all_cast)) if sandbox else (),
            sandbox=sandbox,
        )

    # -- lookups ---------------------------------------------------------------------------------------

    def _identity(self, principal: str) -> Identity:
        name = self.principals.get(principal)
        if name is None:
            return Identity(person=principal, principal=principal, grants=(), known=False)
        return Identity(person=name, principal=principal, grants=self.people[name].grants, known=True)

    def os_user(self, name: str) -> Identity:
        """The terminal user ``name`` (``getpass.getuser()``); unknown → a viewer."""
        return self._identity(f"os:{name}")

    def slack_user(self, team_id: str, user_id: str) -> Identity:
        """The Slack user ``user_id`` of workspace ``team_id``; unknown → a viewer."""
        return self._identity(f"slack:{team_id}:{user_id}")

    def cast_member(self, name: str) -> Identity:
        """A member of the sandbox cast, for ``--as NAME``.

        Raises:
            UsageError: not on the sandbox, or ``name`` is not in the cast (the message lists the cast).
        """
        if not self.sandbox:
            raise UsageError(f"--as {name}: the sandbox cast acts on the sandbox only, not on a live fleet")
        if name not in self.cast:
            names = ", ".join(self.cast) or "none defined in rbac.yml"
            raise UsageError(f"--as {name}: not in the sandbox cast; expected one of: {names}")
        return Identity(person=name, principal=f"os:{name}", grants=self.people[name].grants, known=True)

    def person(self, name: str) -> Identity:
        """A person by canonical name (e.g. to show who may still approve); unknown → a viewer."""
        person = self.people.get(name)
        if person is None:
            return Identity(person=name, principal=f"person:{name}", grants=(), known=False)
        return Identity(person=name, principal=f"person:{name}", grants=person.grants, known=True)

    def eligible(self, permission: Permission, scope: Scope) -> list[str]:
        """The persons who hold ``permission`` over all of ``scope``, sorted by name."""
        return sorted(name for name in self.people if self.person(name).may(permission, scope))


# --------------------------------------------------------------------------------------------------
# Reading rbac.yml
# --------------------------------------------------------------------------------------------------


def _only_keys(node: _Node, allowed: set[str]) -> None:
    for key, child in node.items():
        if key not in allowed:
            raise child.fail("one of the keys " + ", ".join(sorted(allowed)), f"unknown key {key!r}")


def _str_list(node: _Node) -> list[tuple[str, _Node]]:
    """A string or a list of strings, each with its node (for error messages)."""
    if isinstance(node.value, str):
        return [(node.as_str(), node)]
    return [(item.as_str(), item) for item in node.as_list()]


def _read_environments(node: _Node | None) -> frozenset[str] | None:
    """An optional list of environment names (prod, staging, dev); absent or null → ``None`` (all)."""
    if node is None or node.value is None:
        return None
    items = node.as_list()
    if not items:
        raise node.fail("at least one environment (leave the key out for all of them)", "an empty list")
    return frozenset(item.as_enum(Environment).value for item in items)


def _read_regions(parent: _Node, fleet: Fleet) -> frozenset[str] | None:
    """``regions`` and/or ``geographies`` of ``parent`` as a set of region ids; neither → ``None`` (all).

    A geography (americas, emea, apac) stands for every region of the fleet in it, so a grant or a freeze
    written for "EMEA" follows the fleet when a region is added.
    """
    regions_node = parent.opt("regions")
    geos_node = parent.opt("geographies")
    given = [n for n in (regions_node, geos_node) if n is not None and n.value is not None]
    if not given:
        return None
    regions: set[str] = set()
    known = ", ".join(sorted(fleet.regions))
    if regions_node is not None and regions_node.value is not None:
        items = regions_node.as_list()
        if not items:
            raise regions_node.fail("at least one region id (leave the key out for all)", "an empty list")
        for item in items:
            region = item.as_str()
            if region not in fleet.regions:
                raise item.fail(f"a region of the fleet ({known})", region)
            regions.add(region)
    if geos_node is not None and geos_node.value is not None:
        items = geos_node.as_list()
        if not items:
            raise geos_node.fail("at least one geography (leave the key out for all)", "an empty list")
        for item in items:
            geography = item.as_enum(Geography)
            regions.update(r.id for r in fleet.regions.values() if r.geography is geography)
    return frozenset(regions)


def _grant(node: _Node, fleet: Fleet, default_role: Role | None = None) -> Grant:
    role_node = node.opt("role")
    if role_node is None:
        if default_role is None:
            raise node.get("role").fail("a role")  # names the missing key
        role = default_role
    else:
        role = role_node.as_enum(Role)
    return Grant(role=role, environments=_read_environments(node.opt("environments")),
                 regions=_read_regions(node, fleet))


def _principals(
    name: str, node: _Node, claim: _Claim, *, default_os_users: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    os_users: list[str] = []
    os_node = node.opt("os_users")
    if os_node is not None and os_node.value is not None:
        for user, item in _str_list(os_node):
            if not _OS_USER.match(user):
                raise item.fail("an OS user name (letters, digits, . _ - @; no spaces or colons)", user)
            claim(f"os:{user}", name, item)
            os_users.append(user)
    elif default_os_users:
        for user in default_os_users:
            claim(f"os:{user}", name, node)
            os_users.append(user)
    slack: list[str] = []
    slack_node = node.opt("slack")
    if slack_node is not None and slack_node.value is not None:
        for slack_id, item in _str_list(slack_node):
            if not _SLACK_ID.match(slack_id):
                raise item.fail('a Slack "TEAM_ID:USER_ID" such as "T0SANDBOX:U0BOB"', slack_id)
            claim(f"slack:{slack_id}", name, item)
            slack.append(slack_id)
    return tuple(os_users), tuple(slack)


def _person(name: str, node: _Node, fleet: Fleet, claim: _Claim) -> Person:
    _only_keys(node, {"os_users", "slack", "grants"})
    os_users, slack = _principals(name, node, claim)
    if not os_users and not slack:
        raise node.fail("at least one of os_users or slack (how this person reaches opsconsole)")
    grants_node = node.opt("grants")
    grants: list[Grant] = []
    if grants_node is not None and grants_node.value is not None:
        for item in grants_node.as_list():
            _only_keys(item, {"role", "environments", "regions", "geographies"})
            grants.append(_grant(item, fleet))
    return Person(name=name, os_users=os_users, slack=slack, grants=tuple(grants))


def _cast_member(name: str, node: _Node, fleet: Fleet, claim: _Claim) -> Person:
    # Today's shape {role, slack}, plus optional os_users and a scope for the role.
    _only_keys(node, {"role", "slack", "os_users", "environments", "regions", "geographies"})
    if not _OS_USER.match(name):
        raise node.fail("a cast name usable as an OS user name (letters, digits, . _ -)", name)
    os_users, slack = _principals(name, node, claim, default_os_users=(name,))
    return Person(name=name, os_users=os_users, slack=slack, grants=(_grant(node, fleet),))
