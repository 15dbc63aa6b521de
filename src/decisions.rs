//! Decisions asked by an authenticated actor (SPEC H5), for front ends that serve
//! other processes: a principal asks about itself; a workspace admin may also ask
//! about any principal of its own workspace. The embedding application's unrestricted
//! [`Engine::check`](crate::Engine::check) is not reachable through these calls.

use std::collections::HashMap;

use crate::domain::access::{Access, Action, may_ask};
use crate::domain::names::{QualifiedProjectName, WorkspaceName};
use crate::domain::principal::Principal;
use crate::domain::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::info::Membership;
use crate::session::Session;

impl Session<'_> {
    /// Fails with `PermissionDenied` unless the actor may ask about `subject` on
    /// `project` (H5). Depends only on the workspace part of the name, never on
    /// whether the project exists (A6).
    pub fn may_ask_about(&self, subject: &Principal, project: &str) -> Result<()> {
        self.ensure_live()?;
        self.may_ask_about_live(subject, project)
    }

    /// [`may_ask_about`](Self::may_ask_about) for a caller that proved the session
    /// live already.
    fn may_ask_about_live(&self, subject: &Principal, project: &str) -> Result<()> {
        self.may_ask_memo(subject, project, &mut HashMap::new())
    }

    /// The H5 check, remembering in `asked` what it read per workspace and subject.
    fn may_ask_memo(
        &self,
        subject: &Principal,
        project: &str,
        asked: &mut HashMap<(WorkspaceName, Principal), bool>,
    ) -> Result<()> {
        if subject == self.actor() {
            return Ok(());
        }
        let name: QualifiedProjectName = project.parse()?;
        let key = (name.workspace.clone(), subject.clone());
        let allowed = match asked.get(&key) {
            Some(&allowed) => allowed,
            None => {
                let (admin, member) = self.admin_and_member(&name.workspace, subject)?;
                let allowed = may_ask(self.actor(), subject, admin, member);
                asked.insert(key, allowed);
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(self.denied_asking(subject, &name.workspace))
        }
    }

    /// T6: the session's token is still live (a session from `authenticate` dies with
    /// its token); decisions otherwise read nothing that would prove it.
    fn ensure_live(&self) -> Result<()> {
        self.read_live(|_| Ok(()))
    }

    fn denied_asking(&self, subject: &Principal, workspace: &WorkspaceName) -> Error {
        Error::PermissionDenied {
            actor: self.actor().to_string(),
            action: format!("ask about `{subject}`"),
            target: workspace.to_string(),
        }
    }

    /// Whether the actor is an admin of `workspace`, and whether `subject` belongs to it.
    fn admin_and_member(
        &self,
        workspace: &WorkspaceName,
        subject: &Principal,
    ) -> Result<(bool, bool)> {
        let Principal::User(actor) = self.actor() else {
            return Ok((false, false));
        };
        self.read_live(|repo| {
            let (Some(ws), Some(me)) = (repo.workspace(workspace)?, repo.user(actor)?) else {
                return Ok((false, false));
            };
            if repo.workspace_role(ws.id, me.id)? != Some(WorkspaceRole::Admin) {
                return Ok((false, false));
            }
            let member = match subject {
                Principal::ServiceAccount(sa) => sa.workspace == ws.name,
                Principal::User(u) => match repo.user(u)? {
                    Some(u) => repo.workspace_role(ws.id, u.id)?.is_some(),
                    None => false,
                },
            };
            Ok((true, member))
        })
    }

    /// May `subject` (the actor when `None`) perform `action` on `project`? A decision
    /// (A6): "no access" reads the same for an absent project as for an invisible one.
    pub fn check_for(
        &self,
        subject: Option<&Principal>,
        project: &str,
        action: Action,
    ) -> Result<bool> {
        let subject = subject.unwrap_or(self.actor());
        self.ensure_live()?;
        self.may_ask_about_live(subject, project)?;
        self.decide.check(subject, project, action)
    }

    /// The effective role of `subject` (the actor when `None`) on `project`, and the
    /// rule that gave it; `None` for no access.
    pub fn explain_for(
        &self,
        subject: Option<&Principal>,
        project: &str,
    ) -> Result<Option<Access>> {
        let subject = subject.unwrap_or(self.actor());
        self.ensure_live()?;
        self.may_ask_about_live(subject, project)?;
        self.decide.explain(subject, project)
    }

    /// Many [`check_for`](Self::check_for)s, each answered on its own: one item's error
    /// does not fail the others. The H5 rule is read once per workspace and subject.
    ///
    /// The batch as a whole fails only when the session does (its token died, T6).
    pub fn check_batch(
        &self,
        items: &[(Option<Principal>, String, Action)],
    ) -> Result<Vec<Result<bool>>> {
        self.ensure_live()?;
        let mut asked: HashMap<(WorkspaceName, Principal), bool> = HashMap::new();
        Ok(items
            .iter()
            .map(|(subject, project, action)| {
                let subject = subject.as_ref().unwrap_or(self.actor());
                self.may_ask_memo(subject, project, &mut asked)?;
                self.decide.check(subject, project, *action)
            })
            .collect())
    }

    /// The workspaces the actor belongs to, by name, with its role in each: a user's
    /// memberships, or a service account's own workspace.
    pub fn workspaces(&self) -> Result<Vec<Membership>> {
        self.read_live(|repo| match self.actor() {
            Principal::ServiceAccount(sa) => Ok(vec![Membership {
                workspace: sa.workspace.to_string(),
                role: WorkspaceRole::Member,
            }]),
            Principal::User(name) => {
                let user = repo.user(name)?.ok_or_else(|| Error::UserNotFound {
                    user: name.to_string(),
                })?;
                let mut out = Vec::new();
                // One look-up per workspace: fine for the handful of workspaces a
                // database holds; a per-user index query belongs in the repository.
                for ws in repo.workspaces()? {
                    if let Some(role) = repo.workspace_role(ws.id, user.id)? {
                        out.push(Membership {
                            workspace: ws.name.to_string(),
                            role,
                        });
                    }
                }
                Ok(out)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, ProjectOptions};

    fn setup() -> Result<Engine> {
        let engine = Engine::open_in_memory()?;
        for u in ["alice", "bob", "carol", "dave"] {
            engine.create_user(u)?;
        }
        engine.create_workspace("ml-team", "alice")?;
        engine.create_workspace("other", "dave")?;
        let alice = engine.session_for(&"alice".parse()?)?;
        alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)?;
        alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.create_service_account("ml-team", "ci", false)?;
        Ok(engine)
    }

    #[test]
    fn t6_every_decision_of_a_session_dies_with_its_token() -> Result<()> {
        let engine = setup()?;
        let token = engine.issue_user_token("bob", "laptop", None)?;
        let bob = engine.authenticate(token.secret())?;
        let me: Principal = "bob".parse()?;
        assert!(bob.may_ask_about(&me, "ml-team/cls").is_ok());
        bob.revoke_token(token.id)?;
        let dead = |r: Result<()>| matches!(r, Err(Error::InvalidToken));
        assert!(dead(bob.may_ask_about(&me, "ml-team/cls")));
        assert!(dead(
            bob.check_for(None, "ml-team/cls", Action::View).map(drop)
        ));
        assert!(dead(bob.explain_for(None, "ml-team/cls").map(drop)));
        assert!(dead(bob.check_batch(&[]).map(drop)));
        assert!(dead(bob.workspaces().map(drop)));
        Ok(())
    }

    #[test]
    fn h5_principal_asks_about_itself() -> Result<()> {
        let engine = setup()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        assert!(!bob.check_for(None, "ml-team/cls", Action::View)?);
        let ci = engine.session_for(&"ci@ml-team".parse()?)?;
        let me: Principal = "ci@ml-team".parse()?;
        assert!(!ci.check_for(Some(&me), "ml-team/cls", Action::View)?);
        Ok(())
    }

    #[test]
    fn h5_member_or_service_account_may_not_ask_about_others() -> Result<()> {
        let engine = setup()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let alice: Principal = "alice".parse()?;
        let err = bob
            .check_for(Some(&alice), "ml-team/cls", Action::View)
            .unwrap_err();
        assert_eq!(err.name(), "PermissionDenied");
        // The refusal does not depend on whether the project exists (A6).
        let err2 = bob
            .check_for(Some(&alice), "ml-team/nope", Action::View)
            .unwrap_err();
        assert_eq!(err.to_string(), err2.to_string());
        let ci = engine.session_for(&"ci@ml-team".parse()?)?;
        assert_eq!(
            ci.check_for(Some(&"bob".parse()?), "ml-team/cls", Action::View)
                .unwrap_err()
                .name(),
            "PermissionDenied"
        );
        Ok(())
    }

    #[test]
    fn h5_admin_asks_about_principals_of_its_workspace_only() -> Result<()> {
        let engine = setup()?;
        let alice = engine.session_for(&"alice".parse()?)?;
        assert!(!alice.check_for(Some(&"bob".parse()?), "ml-team/cls", Action::View)?);
        assert!(!alice.check_for(Some(&"ci@ml-team".parse()?), "ml-team/cls", Action::View)?);
        // carol is in no workspace of alice's; dave is admin elsewhere.
        let carol: Principal = "carol".parse()?;
        assert_eq!(
            alice
                .check_for(Some(&carol), "ml-team/cls", Action::View)
                .unwrap_err()
                .name(),
            "PermissionDenied"
        );
        assert_eq!(
            alice
                .check_for(Some(&"bob".parse()?), "other/xyz", Action::View)
                .unwrap_err()
                .name(),
            "PermissionDenied"
        );
        let dave = engine.session_for(&"dave".parse()?)?;
        assert_eq!(
            dave.explain_for(Some(&"bob".parse()?), "ml-team/cls")
                .unwrap_err()
                .name(),
            "PermissionDenied"
        );
        Ok(())
    }

    #[test]
    fn h5_batch_answers_each_item_on_its_own() -> Result<()> {
        let engine = setup()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let items = vec![
            (None, "ml-team/cls".to_owned(), Action::View),
            (
                Some("alice".parse()?),
                "ml-team/cls".to_owned(),
                Action::View,
            ),
            (None, "not a name".to_owned(), Action::View),
        ];
        let out = bob.check_batch(&items)?;
        assert!(matches!(out[0], Ok(false)));
        assert_eq!(out[1].as_ref().unwrap_err().name(), "PermissionDenied");
        assert_eq!(out[2].as_ref().unwrap_err().name(), "InvalidProjectName");
        Ok(())
    }

    #[test]
    fn workspaces_lists_the_actors_memberships() -> Result<()> {
        let engine = setup()?;
        let alice = engine.session_for(&"alice".parse()?)?;
        assert_eq!(
            alice.workspaces()?,
            vec![Membership {
                workspace: "ml-team".into(),
                role: WorkspaceRole::Admin
            }]
        );
        let ci = engine.session_for(&"ci@ml-team".parse()?)?;
        assert_eq!(ci.workspaces()?[0].workspace, "ml-team");
        let carol = engine.session_for(&"carol".parse()?)?;
        assert!(carol.workspaces()?.is_empty());
        Ok(())
    }
}
