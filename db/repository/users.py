"""Users, projects and membership; passwords hashed with Argon2id (salted, constant-time check)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Project, ProjectMember, User
from quant_core.errors import MoeqError

LOCAL_USER = "local"
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


def verify_user(s: Session, name: str, password: str) -> bool:
    user = get_user(s, name)
    if user is None or not check_password(password, user.password_hash):
        return False
    if _hasher().check_needs_rehash(user.password_hash):  # parameters were raised since it was stored
        user.password_hash = hash_password(password)
    return True


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
