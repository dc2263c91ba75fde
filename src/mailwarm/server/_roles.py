"""Roles and the permission matrix, enforced on every route (docs/server/roles.md)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PERMISSIONS", "Permission", "Role", "allowed"]


class Role(StrEnum):
    """What a user of an organisation may do, from most to least."""

    OWNER = "owner"
    ADMIN = "admin"
    MANAGER = "manager"
    VIEWER = "viewer"


class Permission(StrEnum):
    """One kind of action on the API."""

    READ = "read"  # accounts, tasks, activities, analytics, health, strategies, settings
    MANAGE_ACCOUNTS = "manage_accounts"  # add, change, connect, start/pause/resume, remove
    MANAGE_TASKS = "manage_tasks"  # schedule tasks by hand
    MANAGE_SETTINGS = "manage_settings"  # the organisation's pool settings
    MANAGE_USERS = "manage_users"  # invite, change roles, disable users
    READ_AUDIT = "read_audit"  # the audit log
    TRANSFER_OWNERSHIP = "transfer_ownership"  # make another user owner


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission) - {Permission.TRANSFER_OWNERSHIP},
    Role.MANAGER: frozenset({Permission.READ, Permission.MANAGE_ACCOUNTS, Permission.MANAGE_TASKS}),
    Role.VIEWER: frozenset({Permission.READ}),
}


def allowed(role: Role, permission: Permission) -> bool:
    """Whether ``role`` has ``permission``."""
    return permission in PERMISSIONS[role]
