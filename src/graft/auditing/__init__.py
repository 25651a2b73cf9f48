"""``graft audit``: know your data before you trust a score.

Example:
    >>> from graft.auditing import audit, read_fixes
    >>> callable(audit), callable(read_fixes)
    (True, True)
"""

from graft.auditing.api import AuditResult, audit
from graft.data.fixes import Fix, apply_fixes, read_fixes

__all__ = ["AuditResult", "Fix", "apply_fixes", "audit", "read_fixes"]
