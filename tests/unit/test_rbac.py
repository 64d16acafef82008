"""Identity and roles: principals resolve to people, grants are scoped, the cast lives on the sandbox only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opsconsole.core.change.rbac import Directory, Grant, Identity, Permission, Role, Scope
from opsconsole.core.errors import InventoryError, UsageError
from opsconsole.core.fleet.model import Fleet

SEED = Path(__file__).resolve().parents[2] / "inventory"
CAST = ["alice", "bob", "carol", "erin", "victor"]

#: A team: dana requests anywhere and approves prod in EMEA; sam approves everything; lee approves
#: eu-west-1 and eu-central-1 through two separate grants.
TEAM = """\
version: 1
people:
  dana:
    os_users: [dana, dkim]
    slack: ["T024BE7LD:U04DANA01"]
    grants:
      - role: operator
      - role: approver
        environments: [prod]
        geographies: [emea]
  sam:
    slack: "T024BE7LD:U04SAM001"
    grants:
      - {role: approver}
  lee:
    os_users: [lee]
    grants:
      - {role: approver, regions: [eu-west-1]}
      - {role: approver, regions: [eu-central-1]}
  noor:
    os_users: [noor]
sandbox_cast:
  alice: {role: operator, slack: "T0SANDBOX:U0ALICE"}
  bob: {role: approver, slack: "T0SANDBOX:U0BOB"}
"""

PROD_EU = Scope.of(environments=["prod"], regions=["eu-west-1", "eu-central-1"])
PROD_US = Scope.of(environments=["prod"], regions=["us-east-1", "us-west-2"])


def team(inventory: Path, fleet: Fleet, text: str = TEAM, *, sandbox: bool = False) -> Directory:
    (inventory / "rbac.yml").write_text(text, encoding="utf-8")
    return Directory.load(inventory, sandbox=sandbox, fleet=fleet)


def broken(inventory: Path, fleet: Fleet, text: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        team(inventory, fleet, text)
    assert caught.value.file.endswith("rbac.yml")
    return caught.value


# -- roles -----------------------------------------------------------------------------------------------


def test_roles_are_ordered_and_each_holds_what_the_lower_ones_hold() -> None:
    assert [r.rank for r in (Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN)] == [0, 1, 2, 3]
    assert Role.ADMIN.at_least(Role.APPROVER) and not Role.OPERATOR.at_least(Role.APPROVER)
    anywhere = Scope.of()
    admin = Identity("erin", "os:erin", (Grant(Role.ADMIN),))
    approver = Identity("bob", "os:bob", (Grant(Role.APPROVER),))
    assert all(admin.may(p, anywhere) for p in Permission)
    assert approver.may(Permission.APPROVE, anywhere) and approver.may(Permission.REQUEST, anywhere)
    assert not approver.may(Permission.BREAK_GLASS, anywhere)


# -- principals and people -------------------------------------------------------------------------------


def test_an_unknown_principal_is_a_viewer_counted_as_itself(seed_fleet: Fleet) -> None:
    directory = Directory.load(SEED, sandbox=True, fleet=seed_fleet)
    for who in (directory.os_user("mallory"), directory.slack_user("T0SANDBOX", "U0NOBODY")):
        assert not who.known and who.person == who.principal
        assert who.role_for(PROD_EU) is Role.VIEWER
        assert who.may(Permission.VIEW, PROD_EU) and not who.may(Permission.REQUEST, PROD_EU)
    assert directory.os_user("mallory").person != directory.os_user("trudy").person
    assert not directory.person("nobody").known


def test_the_same_person_via_terminal_and_slack_is_one_person(
    inventory_copy: Path, seed_fleet: Fleet
) -> None:
    directory = team(inventory_copy, seed_fleet)
    terminal, other_login, slack = (directory.os_user("dana"), directory.os_user("dkim"),
                                    directory.slack_user("T024BE7LD", "U04DANA01"))
    assert terminal.person == other_login.person == slack.person == "dana"
    assert {terminal.principal, other_login.principal, slack.principal} == {
        "os:dana", "os:dkim", "slack:T024BE7LD:U04DANA01"}
    assert terminal.grants == slack.grants and slack.known


def test_a_person_without_grants_is_a_viewer(inventory_copy: Path, seed_fleet: Fleet) -> None:
    noor = team(inventory_copy, seed_fleet).os_user("noor")
    assert noor.known and noor.role_for(PROD_EU) is Role.VIEWER


# -- scoped grants ---------------------------------------------------------------------------------------


def test_an_approver_for_emea_only_cannot_approve_a_us_failover(
    inventory_copy: Path, seed_fleet: Fleet
) -> None:
    dana = team(inventory_copy, seed_fleet).os_user("dana")
    assert dana.may(Permission.APPROVE, PROD_EU)
    assert not dana.may(Permission.APPROVE, PROD_US)
    assert dana.may(Permission.REQUEST, PROD_US)  # her global operator grant still holds
    mixed = Scope.of(environments=["prod"], regions=["eu-west-1", "us-east-1"])
    assert not dana.may(Permission.APPROVE, mixed)


def test_role_for_is_the_highest_role_covering_the_whole_scope(
    inventory_copy: Path, seed_fleet: Fleet
) -> None:
    directory = team(inventory_copy, seed_fleet)
    dana = directory.os_user("dana")
    assert dana.role_for(Scope.of(environments=["prod"], regions=["eu-west-1"])) is Role.APPROVER
    assert dana.role_for(Scope.of(environments=["prod"], regions=["us-east-1"])) is Role.OPERATOR
    assert dana.role_for(Scope.of(environments=["staging"], regions=["eu-west-1"])) is Role.OPERATOR
    assert dana.role_for(Scope.of(environments=["prod", "staging"], regions=["eu-west-1"])) is Role.OPERATOR
    # Two grants of the same role, one region each, cover a request spanning both regions.
    lee = directory.os_user("lee")
    assert lee.role_for(PROD_EU) is Role.APPROVER
    assert lee.role_for(Scope.of(environments=["prod"], regions=["eu-west-1", "us-east-1"])) is Role.VIEWER


def test_eligible_lists_the_people_who_may_sorted(inventory_copy: Path, seed_fleet: Fleet) -> None:
    directory = team(inventory_copy, seed_fleet)
    assert directory.eligible(Permission.APPROVE, PROD_EU) == ["dana", "lee", "sam"]
    assert directory.eligible(Permission.APPROVE, PROD_US) == ["sam"]
    assert directory.eligible(Permission.REQUEST, PROD_US) == ["dana", "sam"]
    assert directory.eligible(Permission.BREAK_GLASS, PROD_US) == []


# -- the sandbox cast ------------------------------------------------------------------------------------


def test_the_cast_exists_on_the_sandbox_with_its_roles(seed_fleet: Fleet) -> None:
    directory = Directory.load(SEED, sandbox=True, fleet=seed_fleet)
    roles = {name: directory.cast_member(name).role_for(PROD_US) for name in CAST}
    assert roles == {"alice": Role.OPERATOR, "bob": Role.APPROVER, "carol": Role.APPROVER,
                     "erin": Role.ADMIN, "victor": Role.VIEWER}
    bob_slack = directory.slack_user("T0SANDBOX", "U0BOB")
    assert bob_slack.person == directory.cast_member("bob").person == directory.os_user("bob").person == "bob"
    assert directory.eligible(Permission.APPROVE, PROD_US) == ["bob", "carol", "erin"]
    assert directory.eligible(Permission.BREAK_GLASS, PROD_EU) == ["erin"]


def test_the_cast_does_not_exist_off_the_sandbox(seed_fleet: Fleet) -> None:
    directory = Directory.load(SEED, sandbox=False, fleet=seed_fleet)
    bob = directory.slack_user("T0SANDBOX", "U0BOB")
    assert not bob.known and bob.role_for(PROD_US) is Role.VIEWER
    assert not directory.os_user("erin").may(Permission.BREAK_GLASS, PROD_US)
    assert directory.eligible(Permission.APPROVE, PROD_US) == []
    with pytest.raises(UsageError, match="sandbox only"):
        directory.cast_member("bob")


def test_acting_as_someone_outside_the_cast_lists_the_cast(seed_fleet: Fleet) -> None:
    directory = Directory.load(SEED, sandbox=True, fleet=seed_fleet)
    with pytest.raises(UsageError, match="expected one of: alice, bob, carol, erin, victor"):
        directory.cast_member("mallory")


def test_loading_without_a_fleet_reads_the_inventory_next_to_the_file() -> None:
    directory = Directory.load(SEED / "hosts.yml", sandbox=True)
    assert directory.cast == tuple(CAST)


# -- a bad rbac.yml --------------------------------------------------------------------------------------


def edit(change: str, old: str = "", text: str = TEAM) -> str:
    return text.replace(old, change) if old else text + change


def test_an_unknown_role_names_the_key(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet, edit("{role: superuser}", "{role: approver}"))
    assert err.key_path == "people.sam.grants[0].role" and "viewer, operator, approver, admin" in err.expected


def test_a_region_not_in_the_fleet_names_the_key(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet, edit("regions: [eu-south-9]", "regions: [eu-west-1]"))
    assert err.key_path == "people.lee.grants[0].regions[0]" and err.found == "eu-south-9"
    assert "us-east-1" in err.expected


def test_an_unknown_environment_names_the_key(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet, edit("environments: [qa]", "environments: [prod]"))
    assert err.key_path == "people.dana.grants[1].environments[0]" and "prod, staging, dev" in err.expected


def test_a_principal_mapped_to_two_people_is_refused(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet, edit("os_users: [dkim]", "os_users: [lee]"))
    assert err.key_path == "people.lee.os_users[0]" and "os:dkim also mapped to dana" in str(err.found)
    # The cast shares the principals' namespace with the team, even off the sandbox.
    err = broken(inventory_copy, seed_fleet, edit('"T024BE7LD:U04SAM001"}', '"T0SANDBOX:U0BOB"}'))
    assert err.key_path == "sandbox_cast.bob.slack"


def test_a_malformed_slack_id_and_an_unknown_key_are_refused(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet, edit('slack: "U04SAM001"', 'slack: "T024BE7LD:U04SAM001"'))
    assert err.key_path == "people.sam.slack" and "TEAM_ID:USER_ID" in err.expected
    err = broken(inventory_copy, seed_fleet, edit("    grant:\n", "    grants:\n      - {role: approver}\n"))
    assert err.key_path == "people.sam.grant" and "unknown key" in str(err.found)


def test_a_duplicate_key_is_refused_with_its_line(inventory_copy: Path, seed_fleet: Fleet) -> None:
    err = broken(inventory_copy, seed_fleet,
                 edit("  noor:\n    os_users: [noor2]\nsandbox_cast:\n", "sandbox_cast:\n"))
    assert err.key_path == "noor" and "duplicate" in str(err.found) and err.line is not None


def test_the_seed_file_keeps_the_cast_shape(seed_fleet: Fleet) -> None:
    data = yaml.safe_load((SEED / "rbac.yml").read_text(encoding="utf-8"))
    assert data["sandbox_cast"]["alice"] == {"role": "operator", "slack": "T0SANDBOX:U0ALICE"}
