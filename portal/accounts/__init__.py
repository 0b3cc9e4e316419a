"""Who may log in to the portal's admin side, and how."""
