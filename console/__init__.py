"""The admin composition (``console.admin``): admin pages that span layers."""
