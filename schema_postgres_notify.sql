-- Version 4 (SPEC B3): every statement that changes what a decision or an
-- authentication reads notifies channel `turnstile_changes` when its transaction
-- commits, so that an engine with the opt-in decision cache (src/repo/pg_listen.rs)
-- hears every change, whoever made it: another turnstile process, or plain SQL.
-- PostgreSQL folds the identical notifications of one transaction into one.

CREATE FUNCTION turnstile_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('turnstile_changes', '');
    RETURN NULL;
END $$;

CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER workspaces_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER workspace_members_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON workspace_members FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER service_accounts_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON service_accounts FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER projects_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER user_grants_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_grants
    FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER service_account_grants_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON service_account_grants FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
CREATE TRIGGER tokens_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION turnstile_notify_change();
