"""Fizy staff roles: least-privilege Django groups for the admin.

Every role can look (the support role's view permissions); each adds only what its work needs.
The groups are created by a data migration (``clinics/migrations/0005_staff_roles.py``) and kept
in step with the code after every ``migrate`` (a post_migrate receiver in ``clinics/apps.py``), so
a model added later is visible to support without another migration. A permission a role names
that does not exist yet is skipped until it does."""

from dataclasses import dataclass, field

from django.apps import apps as global_apps

# The project's apps whose rows staff may look at (support's view permissions).
STAFF_APPS = ("clinics", "catalog", "routing", "carts", "fulfillment", "notices", "clinic_api")


@dataclass(frozen=True)
class Role:
    group: str
    does: str
    permissions: tuple[str, ...] = field(default=())

    def grants(self, app_label: str, codename: str) -> bool:
        return (app_label in STAFF_APPS and codename.startswith("view_")) or f"{app_label}.{codename}" in self.permissions


SUPPORT = Role("Support", "read-only: sees every admin page, changes nothing")
DISPATCH = Role("Dispatch", "retries partner dispatch, sets a line's status and the watchdog's expected times", (
    "fulfillment.change_partnerorder",
    "fulfillment.change_orderline",
    "fulfillment.add_expectedtime", "fulfillment.change_expectedtime", "fulfillment.delete_expectedtime",
))
FINANCE = Role("Finance", "refunds a line after shipment (with a reason), sets organizations' platform fees, "
                          "approves another staff member's large refund", (
    "clinics.change_organization",
    "clinics.change_platform_fee",
    "fulfillment.refund_orderline",
    "clinics.approve_line_refund",
))
INTEGRATIONS = Role("Integrations", "partners (API URL and credentials, licenses), their offerings, products and "
                                    "routing rules; approves another staff member's partner API URL change", (
    "catalog.add_partner", "catalog.change_partner", "catalog.change_partner_credentials",
    "catalog.add_partnerstatelicense", "catalog.change_partnerstatelicense", "catalog.delete_partnerstatelicense",
    "catalog.add_offering", "catalog.change_offering", "catalog.delete_offering",
    "catalog.add_product", "catalog.change_product",
    "routing.add_routingrule", "routing.change_routingrule", "routing.delete_routingrule",
    "clinics.approve_partner_api_url",
))
USER_ADMIN = Role("User admin", "users (and their staff roles) and clinic memberships; new clinics and organizations; "
                                "unlocks locked logins and removes lost authenticators", (
    "auth.view_user", "auth.add_user", "auth.change_user", "auth.view_group",
    "clinics.add_membership", "clinics.change_membership", "clinics.delete_membership",
    "clinics.add_clinic", "clinics.change_clinic", "clinics.add_organization", "clinics.change_organization",
    # The front door (accounts/): unlock a login locked by failed passwords; remove a lost
    # authenticator or recovery codes (never seeing their secrets).
    "axes.view_accessattempt", "axes.delete_accessattempt",
    "otp_totp.view_totpdevice", "otp_totp.delete_totpdevice", "otp_static.view_staticdevice", "otp_static.delete_staticdevice",
))

ROLES = (SUPPORT, DISPATCH, FINANCE, INTEGRATIONS, USER_ADMIN)

# The demo's all-permissions group, replaced by the roles.
RETIRED_GROUPS = ("Pharmacy operations",)


def sync_role_groups(*, apps=global_apps, using: str = "default") -> None:
    """Create the role groups (if missing) and set each one's permissions to exactly what its role
    grants. Idempotent; safe inside a migration (pass its ``apps``)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = list(Permission.objects.using(using).select_related("content_type"))
    for role in ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=role.group)
        group.permissions.set([p for p in permissions if role.grants(p.content_type.app_label, p.codename)])
    Group.objects.using(using).filter(name__in=RETIRED_GROUPS).delete()
