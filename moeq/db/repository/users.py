"""Users, projects and membership; passwords hashed with Argon2id (salted, constant-time check)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from moeq.db.models import Project, ProjectMember, User
from moeq.contract.errors import MoeqError

LOCAL_USER = "local"
MAX_LOGIN_NAME = 64  # characters a login name may have (the users.name column; checked before any query)
DEFAULT_PROJECT = "default"


class AuthError(MoeqError):
    """Unknown user, wrong password, or no access to a project."""


def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def get_user(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def ensure_user(s: Session, name: str, password: str | None = None, admin: bool = False) -> User:
    user = get_user(s, name)
    if user is None:
        user = User(name=name, is_admin=admin)
        s.add(user)
    if password is not None:
        user.password_hash = hash_password(password)
    s.flush()
    return user


_DUMMY_HASH: list[str] = []  # computed once: unknown users are verified against it (same time as known)


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password("moeq-no-such-user"))
    return _DUMMY_HASH[0]


def verify_user(s: Session, name: str, password: str) -> bool:
    """True for the right password; unknown or password-less users take as long as known ones."""
    user = get_user(s, name) if plausible_name(name) else None
    if user is None or not user.password_hash:
        check_password(password, _dummy_hash())
        return False
    if not check_password(password, user.password_hash):
        return False
    if _hasher().check_needs_rehash(user.password_hash):  # parameters were raised since it was stored
        user.password_hash = hash_password(password)
    return True


def plausible_name(name) -> bool:
    """A login name the database may be asked about: text, printable (no NUL or control characters),
    1 to MAX_LOGIN_NAME characters. Anything else is an unknown user without a query."""
    return isinstance(name, str) and 0 < len(name) <= MAX_LOGIN_NAME and name.isprintable()


def ensure_project(s: Session, name: str) -> Project:
    project = s.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(name=name)
        s.add(project)
        s.flush()
    return project


def add_member(s: Session, project: str, user: str, role: str = "member") -> None:
    p, u = ensure_project(s, project), get_user(s, user)
    if u is None:
        raise AuthError(f"unknown user {user!r}")
    if s.get(ProjectMember, (p.id, u.id)) is None:
        s.add(ProjectMember(project_id=p.id, user_id=u.id, role=role))
        s.flush()


def user_projects(s: Session, user: str) -> list[str]:
    """Projects a user may see; admins see all."""
    u = get_user(s, user)
    if u is None:
        return []
    if u.is_admin:
        return list(s.scalars(select(Project.name).order_by(Project.name)))
    q = select(Project.name).join(ProjectMember, ProjectMember.project_id == Project.id) \
        .where(ProjectMember.user_id == u.id).order_by(Project.name)
    return list(s.scalars(q))


def require_access(s: Session, user: str, project: str) -> None:
    if project not in user_projects(s, user):
        raise AuthError(f"user {user!r} is not a member of project {project!r}")


def password_hash(s: Session, name: str) -> str | None:
    """The stored hash (None for an unknown or removed user): a change ends older sessions."""
    user = get_user(s, name)
    return user.password_hash if user is not None else None


def remove_member(s: Session, project: str, user: str) -> bool:
    """Take `user` out of `project`; False when they were not a member."""
    p = s.scalar(select(Project).where(Project.name == project))
    u = get_user(s, user)
    if u is None:
        raise AuthError(f"unknown user {user!r}")
    member = s.get(ProjectMember, (p.id, u.id)) if p is not None else None
    if member is None:
        return False
    s.delete(member)
    s.flush()
    return True


def remove_user(s: Session, name: str) -> None:
    """Disable `name` for good: no password (no login; open sessions end), no memberships, no admin.
    The user row stays so their past runs keep their author."""
    u = get_user(s, name)
    if u is None:
        raise AuthError(f"unknown user {name!r}")
    for m in s.scalars(select(ProjectMember).where(ProjectMember.user_id == u.id)):
        s.delete(m)
    u.password_hash, u.is_admin = None, False
    s.flush()
