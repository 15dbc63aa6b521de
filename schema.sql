-- turnstile schema, version 3 (PRAGMA user_version = 3).
--
-- This file is the whole current schema, applied to a new database. An older database
-- is brought up to date by the steps of `UPGRADES` in src/repo/sqlite.rs (D1):
--   1 -> 2  project names in NFC, their keys recomputed by Unicode caseless matching (N3)
--           and their UTS #39 skeletons added (N7); audit actor and target keys (L2);
--           signing_keys (H4)
--   2 -> 3  projects_by_name, the check's covering index
--
-- Embedded in the library with include_str! and applied to a new database in one
-- transaction. Enumerations are small integers so that SQL can compare and max() them:
--   project role:   1 viewer, 2 contributor, 3 owner
--   workspace role: 1 member, 2 admin
--   visibility:     0 private, 1 workspace, 2 public
-- Times are Unix milliseconds (UTC). Names keep the spelling given at creation in
-- `name` and the case-folded form that uniqueness is decided on in `name_key`; a
-- project's `name_key` is NFKC_Casefold (N3) and its `name` is in NFC.
-- Columns that version 2 added come last, as ALTER TABLE put them in an upgraded
-- database; their DEFAULT serves only that ALTER TABLE, every writer sets them.
-- The rules of who may do what live in Rust (src/domain); the triggers below are a
-- second line of defence for the invariants that SQL can state (SPEC D3).

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id                     INTEGER PRIMARY KEY,
    name                   TEXT    NOT NULL UNIQUE CHECK (name = lower(name)),
    allow_public_projects  INTEGER NOT NULL DEFAULT 0 CHECK (allow_public_projects IN (0, 1)),
    service_account_limit  INTEGER NOT NULL DEFAULT 50 CHECK (service_account_limit >= 0),
    created_at             INTEGER NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces (id),
    user_id       INTEGER NOT NULL REFERENCES users (id),
    role          INTEGER NOT NULL CHECK (role IN (1, 2)),
    PRIMARY KEY (workspace_id, user_id)
) WITHOUT ROWID;

CREATE INDEX workspace_members_by_user ON workspace_members (user_id, workspace_id);

CREATE TABLE service_accounts (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces (id),
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, name_key)
);

CREATE TABLE projects (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces (id),
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    visibility    INTEGER NOT NULL CHECK (visibility IN (0, 1, 2)),
    description   TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    -- The UTS #39 skeleton of name_key (N7): a new name whose skeleton a project of
    -- the workspace already has is refused as confusable. Not unique: an upgraded
    -- database may hold look-alikes created before N7.
    name_skeleton TEXT    NOT NULL DEFAULT '',
    UNIQUE (workspace_id, name_key),
    UNIQUE (workspace_id, key)
);

CREATE INDEX projects_by_skeleton ON projects (workspace_id, name_skeleton);

-- The check (one statement from names to facts) finds a project by its name key and
-- needs only its id and visibility: with this covering index that is one index
-- look-up, where the UNIQUE index above needs a second one into the table's rows.
CREATE INDEX projects_by_name ON projects (workspace_id, name_key, visibility);

-- Lists: a workspace's projects of one visibility in name order, covering, so that a
-- list or a page is a range scan with no sort and no look-up per row.
CREATE INDEX projects_by_visibility ON projects (workspace_id, visibility, name_key, name);

CREATE TABLE user_grants (
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    role        INTEGER NOT NULL CHECK (role IN (1, 2, 3)),
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;

CREATE INDEX user_grants_by_user ON user_grants (user_id, project_id);

CREATE TABLE service_account_grants (
    project_id          INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    service_account_id  INTEGER NOT NULL REFERENCES service_accounts (id),
    role                INTEGER NOT NULL CHECK (role IN (1, 2, 3)),
    PRIMARY KEY (project_id, service_account_id)
) WITHOUT ROWID;

CREATE INDEX service_account_grants_by_account
    ON service_account_grants (service_account_id, project_id);

-- API tokens: only the SHA-256 digest of a token is stored (T2). A token belongs to
-- exactly one user or one service account.
CREATE TABLE tokens (
    id                  INTEGER PRIMARY KEY,
    digest              BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    user_id             INTEGER REFERENCES users (id),
    service_account_id  INTEGER REFERENCES service_accounts (id),
    label               TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,
    last_used_at        INTEGER,
    revoked_at          INTEGER,
    CHECK ((user_id IS NULL) <> (service_account_id IS NULL))
);

CREATE INDEX tokens_by_user ON tokens (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX tokens_by_service_account ON tokens (service_account_id)
    WHERE service_account_id IS NOT NULL;

-- The audit log (L1, L2): append-only, self-contained text so that events outlive
-- the projects they name. `actor` is a principal's name, or `application` for calls
-- the embedding application makes without an actor. `actor_key` and `target_key` are
-- their NFKC_Casefold forms, which the filters of L2 compare (N1-N3).
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    workspace  TEXT,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied')),
    details    TEXT    NOT NULL DEFAULT '{}',
    actor_key  TEXT    NOT NULL DEFAULT '',
    target_key TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX audit_events_by_workspace ON audit_events (workspace, at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'turnstile: audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'turnstile: audit events are append-only');
END;

-- A4: a workspace keeps at least one admin.
CREATE TRIGGER workspace_keeps_an_admin_on_update
BEFORE UPDATE OF role ON workspace_members
WHEN OLD.role = 2 AND NEW.role <> 2
    AND (SELECT count(*) FROM workspace_members
         WHERE workspace_id = OLD.workspace_id AND role = 2) <= 1
BEGIN
    SELECT RAISE(ABORT, 'turnstile: last admin');
END;

CREATE TRIGGER workspace_keeps_an_admin_on_delete
BEFORE DELETE ON workspace_members
WHEN OLD.role = 2
    AND (SELECT count(*) FROM workspace_members
         WHERE workspace_id = OLD.workspace_id AND role = 2) <= 1
BEGIN
    SELECT RAISE(ABORT, 'turnstile: last admin');
END;

-- S2: at most service_account_limit active service accounts per workspace.
CREATE TRIGGER service_account_limit_on_insert
BEFORE INSERT ON service_accounts
WHEN NEW.active = 1
    AND (SELECT count(*) FROM service_accounts
         WHERE workspace_id = NEW.workspace_id AND active = 1)
        >= (SELECT service_account_limit FROM workspaces WHERE id = NEW.workspace_id)
BEGIN
    SELECT RAISE(ABORT, 'turnstile: service account limit');
END;

CREATE TRIGGER service_account_limit_on_reactivate
BEFORE UPDATE OF active ON service_accounts
WHEN OLD.active = 0 AND NEW.active = 1
    AND (SELECT count(*) FROM service_accounts
         WHERE workspace_id = NEW.workspace_id AND active = 1)
        >= (SELECT service_account_limit FROM workspaces WHERE id = NEW.workspace_id)
BEGIN
    SELECT RAISE(ABORT, 'turnstile: service account limit');
END;

-- A7: a user's grant needs membership of the project's workspace.
CREATE TRIGGER user_grant_needs_membership
BEFORE INSERT ON user_grants
WHEN NOT EXISTS (SELECT 1 FROM projects p
                 JOIN workspace_members m ON m.workspace_id = p.workspace_id
                 WHERE p.id = NEW.project_id AND m.user_id = NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'turnstile: user not in workspace');
END;

-- R7: a service account is granted only on projects of its own workspace.
CREATE TRIGGER service_account_grant_in_own_workspace
BEFORE INSERT ON service_account_grants
WHEN (SELECT workspace_id FROM projects WHERE id = NEW.project_id)
    IS NOT (SELECT workspace_id FROM service_accounts WHERE id = NEW.service_account_id)
BEGIN
    SELECT RAISE(ABORT, 'turnstile: service account of another workspace');
END;

-- H4: the keys that sign the HTTP server's access tokens, shared by every server
-- process on this database. The newest signs; any listed key verifies.
CREATE TABLE signing_keys (
    id          INTEGER PRIMARY KEY,
    secret      BLOB    NOT NULL CHECK (length(secret) = 32),
    created_at  INTEGER NOT NULL
);
