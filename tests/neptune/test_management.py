"""Every `neptune.management` function except the trash family, from the real
`neptune` 1.14 client, against `turnstile serve` (SPEC H2): results as an admin, a
plain member and a service account, and the client's own exception for each error."""

import pytest
from neptune import management as m
from neptune.management.exceptions import (
    AccessRevokedOnDeletion,
    ProjectAlreadyExists,
    ProjectNotFound,
    ProjectPrivacyRestrictedException,
    ServiceAccountAlreadyHasAccess,
    ServiceAccountNotExistsOrWithoutAccess,
    ServiceAccountNotFound,
    UserAlreadyHasAccess,
    UserAlreadyInvited,
    UserNotExistsOrWithoutAccess,
    WorkspaceNotFound,
    WorkspaceOrUserNotFound,
)
from neptune.common.exceptions import Forbidden, Unauthorized
from neptune.exceptions import NeptuneInvalidApiTokenException

WS = "ml-team"


def test_create_list_and_delete_project_as_admin(world):
    t = world["admin"]
    name = m.create_project(f"{WS}/admin-cycle", api_token=t)
    assert name == f"{WS}/admin-cycle"
    assert f"{WS}/admin-cycle" in m.get_project_list(api_token=t)
    m.delete_project(f"{WS}/admin-cycle", api_token=t)
    assert f"{WS}/admin-cycle" not in m.get_project_list(api_token=t)


def test_create_project_with_workspace_argument_key_and_visibility(world):
    t = world["admin"]
    name = m.create_project("keyed", workspace=WS, key="KEYED", visibility="workspace",
                            description="d", api_token=t)
    assert name == f"{WS}/keyed"
    # Workspace visibility: every member is owner (R3), shown as Neptune's `owner`.
    members = m.get_project_member_list(f"{WS}/keyed", api_token=t)
    assert members["bob"] == "owner"
    assert f"{WS}/keyed" in m.get_project_list(api_token=world["bob"])


def test_create_existing_project_raises_project_already_exists(world):
    t = world["admin"]
    m.create_project(f"{WS}/dup", api_token=t)
    with pytest.raises(ProjectAlreadyExists):
        m.create_project(f"{WS}/DUP", api_token=t)


def test_public_project_in_restricted_workspace_raises_privacy_restricted(world):
    with pytest.raises(ProjectPrivacyRestrictedException):
        m.create_project(f"{WS}/open", visibility="pub", api_token=world["admin"])


def test_create_project_in_unknown_workspace_raises_workspace_not_found(world):
    with pytest.raises(WorkspaceNotFound):
        m.create_project("nowhere/p1", api_token=world["admin"])


def test_delete_missing_or_invisible_project_raises_project_not_found(world):
    with pytest.raises(ProjectNotFound):
        m.delete_project(f"{WS}/never-was", api_token=world["admin"])
    m.create_project(f"{WS}/secret", api_token=world["admin"])
    # Bob cannot see the private project: it does not exist for him (A6).
    with pytest.raises(ProjectNotFound):
        m.delete_project(f"{WS}/secret", api_token=world["bob"])


def test_member_cannot_delete_a_project_he_sees(world):
    m.create_project(f"{WS}/visible", visibility="workspace", api_token=world["admin"])
    # The client's exception for a 403 on deletion.
    with pytest.raises(AccessRevokedOnDeletion):
        m.delete_project(f"{WS}/visible", api_token=world["bob"])


def test_project_members_add_list_remove(world):
    t = world["admin"]
    p = f"{WS}/members"
    m.create_project(p, api_token=t)
    m.add_project_member(p, "bob", "contributor", api_token=t)
    assert m.get_project_member_list(p, api_token=t) == {"alice": "owner", "bob": "contributor"}
    with pytest.raises(UserAlreadyHasAccess):
        m.add_project_member(p, "bob", "viewer", api_token=t)
    m.remove_project_member(p, "bob", api_token=t)
    assert m.get_project_member_list(p, api_token=t) == {"alice": "owner"}
    with pytest.raises(UserNotExistsOrWithoutAccess):
        m.remove_project_member(p, "bob", api_token=t)
    with pytest.raises(UserNotExistsOrWithoutAccess):
        m.remove_project_member(p, "nobody", api_token=t)


def test_member_with_viewer_role_sees_but_cannot_manage(world):
    t = world["admin"]
    p = f"{WS}/viewed"
    m.create_project(p, api_token=t)
    m.add_project_member(p, "bob", "viewer", api_token=t)
    assert m.get_project_member_list(p, api_token=world["bob"])["bob"] == "viewer"
    assert p in m.get_project_list(api_token=world["bob"])
    with pytest.raises(Forbidden):
        m.add_project_member(p, "dave", "viewer", api_token=world["bob"])


def test_project_member_calls_on_invisible_project_raise_project_not_found(world):
    p = f"{WS}/hidden-members"
    m.create_project(p, api_token=world["admin"])
    with pytest.raises(ProjectNotFound):
        m.get_project_member_list(p, api_token=world["bob"])
    with pytest.raises(ProjectNotFound):
        m.add_project_member(p, "dave", "viewer", api_token=world["bob"])
    with pytest.raises(ProjectNotFound):
        m.remove_project_member(p, "alice", api_token=world["bob"])
    with pytest.raises(ProjectNotFound):
        m.get_project_member_list(f"{WS}/no-such", api_token=world["admin"])


def test_workspace_visibility_member_already_has_owner_access(world):
    p = f"{WS}/shared"
    m.create_project(p, visibility="workspace", api_token=world["admin"])
    with pytest.raises(UserAlreadyHasAccess):
        m.add_project_member(p, "bob", "viewer", api_token=world["admin"])


def test_workspace_member_list_and_invitations(world):
    t = world["admin"]
    members = m.get_workspace_member_list(WS, api_token=t)
    assert members["alice"] == "admin"
    assert members["bob"] == "member"
    assert m.get_workspace_member_list(WS, api_token=world["bob"])["alice"] == "admin"
    m.invite_to_workspace(username="erin", workspace=WS, role="member", api_token=t)
    assert m.get_workspace_member_list(WS, api_token=t)["erin"] == "member"
    with pytest.raises(UserAlreadyInvited):
        m.invite_to_workspace(username="erin", workspace=WS, api_token=t)
    with pytest.raises(WorkspaceOrUserNotFound):
        m.invite_to_workspace(username="no-such-user", workspace=WS, api_token=t)
    with pytest.raises(WorkspaceOrUserNotFound):
        m.invite_to_workspace(username="dave", workspace="no-such-ws", api_token=t)


def test_invite_as_admin_with_add_to_all_projects(world):
    t = world["admin"]
    p = f"{WS}/before-invite"
    m.create_project(p, api_token=t)
    m.invite_to_workspace(username="frank", workspace=WS, role="member",
                          add_to_all_projects=True, api_token=t)
    assert m.get_workspace_member_list(WS, api_token=t)["frank"] == "member"
    assert m.get_project_member_list(p, api_token=t)["frank"] == "contributor"
    m.invite_to_workspace(username="gina", workspace=WS, role="admin", api_token=t)
    assert m.get_workspace_member_list(WS, api_token=t)["gina"] == "admin"


def test_member_cannot_invite(world):
    with pytest.raises(Forbidden):
        m.invite_to_workspace(username="erin", workspace=WS, api_token=world["bob"])


def test_workspace_calls_on_unknown_workspace_raise_workspace_not_found(world):
    t = world["admin"]
    with pytest.raises(WorkspaceNotFound):
        m.get_workspace_member_list("no-such-ws", api_token=t)
    with pytest.raises(WorkspaceNotFound):
        m.get_workspace_service_account_list("no-such-ws", api_token=t)
    with pytest.raises(WorkspaceNotFound):
        m.get_workspace_status("no-such-ws", api_token=t)


def test_workspace_service_accounts_listed_for_admin_member_and_service_account(world):
    for who in ("admin", "bob", "sa"):
        sas = m.get_workspace_service_account_list(WS, api_token=world[who])
        assert sas == {"cicd@ml-team": "member", "nightly@ml-team": "member"}, who


def test_project_service_accounts_add_list_remove(world):
    t = world["admin"]
    p = f"{WS}/with-sa"
    m.create_project(p, api_token=t)
    m.add_project_service_account(p, "nightly@ml-team", "contributor", api_token=t)
    assert m.get_project_service_account_list(p, api_token=t) == {"nightly@ml-team": "contributor"}
    with pytest.raises(ServiceAccountAlreadyHasAccess):
        m.add_project_service_account(p, "nightly@ml-team", "viewer", api_token=t)
    m.remove_project_service_account(p, "nightly@ml-team", api_token=t)
    assert m.get_project_service_account_list(p, api_token=t) == {}
    with pytest.raises(ServiceAccountNotExistsOrWithoutAccess):
        m.remove_project_service_account(p, "nightly@ml-team", api_token=t)
    with pytest.raises(ServiceAccountNotFound):
        m.add_project_service_account(p, "ghost@ml-team", "viewer", api_token=t)
    with pytest.raises(ProjectNotFound):
        m.get_project_service_account_list(f"{WS}/nope", api_token=t)


def test_service_account_creates_and_manages_its_own_project(world):
    t = world["sa"]
    p = f"{WS}/sa-owned"
    assert m.create_project(p, api_token=t) == p
    assert p in m.get_project_list(api_token=t)
    # A1: the creator holds an explicit owner grant; as owner it manages members (A2).
    assert m.get_project_service_account_list(p, api_token=t) == {"cicd@ml-team": "owner"}
    m.add_project_member(p, "bob", "viewer", api_token=t)
    assert m.get_project_member_list(p, api_token=t) == {"bob": "viewer"}
    m.add_project_service_account(p, "nightly@ml-team", "viewer", api_token=t)
    m.remove_project_service_account(p, "nightly@ml-team", api_token=t)
    m.remove_project_member(p, "bob", api_token=t)
    # A3: a service account never deletes a project.
    with pytest.raises(AccessRevokedOnDeletion):
        m.delete_project(p, api_token=t)


def test_service_account_does_not_see_workspace_visibility_projects(world):
    p = f"{WS}/members-only"
    m.create_project(p, visibility="workspace", api_token=world["admin"])
    # R5: workspace visibility never reaches a service account.
    assert p not in m.get_project_list(api_token=world["sa"])
    with pytest.raises(ProjectNotFound):
        m.get_project_member_list(p, api_token=world["sa"])


def test_service_account_cannot_invite_or_create_elsewhere(world):
    with pytest.raises(Forbidden):
        m.invite_to_workspace(username="erin", workspace=WS, api_token=world["sa"])
    with pytest.raises(WorkspaceNotFound):
        m.create_project("other-ws/p1", api_token=world["sa"])


def test_workspace_status_counts(world):
    status = m.get_workspace_status(WS, api_token=world["admin"])
    assert status["storageBytesUsed"] == 0
    assert status["activeProjectsUsage"] >= 0
    assert status["membersCount"] >= 3
    assert m.get_workspace_status(WS, api_token=world["bob"])["membersCount"] == status["membersCount"]


def test_outsider_sees_nothing(world):
    # carol is in no workspace.
    t = world["carol"]
    assert m.get_project_list(api_token=t) == []
    with pytest.raises(ProjectNotFound):
        m.get_project_member_list(f"{WS}/secret", api_token=t)


def test_bare_turnstile_token_is_accepted_at_the_exchange(world):
    import base64, json
    # The client only needs api_address; api_key may be the bare turnstile token.
    raw = world["raw"]["bob"]
    token = base64.b64encode(json.dumps({"api_address": world["url"], "api_key": raw}).encode()).decode()
    assert isinstance(m.get_project_list(api_token=token), list)


def test_invalid_and_revoked_tokens_are_refused(world):
    import base64, json, subprocess
    from conftest import cli
    bad = base64.b64encode(json.dumps({"api_address": world["url"], "api_key": "tst_nonsense"}).encode()).decode()
    with pytest.raises((NeptuneInvalidApiTokenException, Unauthorized)):
        m.get_project_list(api_token=bad)
    # A token revoked after the client exchanged it stops working at once (T6).
    out = json.loads(cli(world["db"], "--json", "user", "token", "issue", "dave", "--label", "short"))
    secret = out["token"]["secret"]
    t = world["server"].neptune_token(secret)
    assert isinstance(m.get_project_list(api_token=t), list)
    cli(world["db"], "user", "token", "revoke", str(out["token"]["id"]), token=secret)
    with pytest.raises(Exception) as info:
        m.get_project_list(api_token=t)
    assert type(info.value).__name__ in ("Unauthorized", "NeptuneInvalidApiTokenException", "OAuth2Error", "InvalidGrantError"), repr(info.value)


def test_access_log_names_principals_and_holds_no_secret(world):
    m.get_project_list(api_token=world["admin"])
    log = world["log"].read_text()
    assert '"principal":"alice"' in log
    for secret in world["raw"].values():
        assert secret not in log
    for neptune_token in (world["admin"], world["bob"], world["sa"]):
        assert neptune_token not in log


def test_plain_member_creates_and_manages_own_project_but_cannot_delete_it(world):
    t = world["bob"]
    p = f"{WS}/bobs"
    assert m.create_project(p, api_token=t) == p
    # The creator's grant (A1); workspace admins are not listed as members.
    assert m.get_project_member_list(p, api_token=t) == {"bob": "owner"}
    m.add_project_member(p, "dave", "viewer", api_token=t)
    m.add_project_service_account(p, "cicd@ml-team", "contributor", api_token=t)
    assert m.get_project_service_account_list(p, api_token=t) == {"cicd@ml-team": "contributor"}
    # The service account now sees the project through its grant (R2).
    assert p in m.get_project_list(api_token=world["sa"])
    m.remove_project_service_account(p, "cicd@ml-team", api_token=t)
    assert p not in m.get_project_list(api_token=world["sa"])
    m.remove_project_member(p, "dave", api_token=t)
    with pytest.raises(AccessRevokedOnDeletion):
        m.delete_project(p, api_token=t)
    m.delete_project(p, api_token=world["admin"])


def test_service_account_reads_workspace_members_and_status(world):
    t = world["sa"]
    assert m.get_workspace_member_list(WS, api_token=t)["alice"] == "admin"
    assert m.get_workspace_status(WS, api_token=t)["membersCount"] >= 3
    with pytest.raises(WorkspaceNotFound):
        m.get_workspace_member_list("no-such-ws", api_token=t)
