"""Access-review campaigns: reviewers decide keep/revoke/change per account, with retained evidence."""
