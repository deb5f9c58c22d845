"""identity-analytics: privacy-safe demographics analytics over identity platform data."""

from identity_analytics.cohort_table import CohortTable
from identity_analytics.contracts import Demographics, Identity, Profile, PublicProfile
from identity_analytics.dataset import Dataset
from identity_analytics.errors import IdentityAnalyticsError, LoadError, NotFound, PrivacyError, SourceError
from identity_analytics.load_report import LoadReport, SourceCounts
from identity_analytics.overlap import OverlapTable
from identity_analytics.policy import PrivacyPolicy, PseudonymKeyWarning
from identity_analytics.profiles import ProfileStore
from identity_analytics.risk import RiskReport
from identity_analytics.segments import Segment, SegmentResult
from identity_analytics.specs import Cohort
from identity_analytics.version import __version__
from identity_analytics.vocabulary import Vocabulary

__all__ = [
    "Cohort",
    "CohortTable",
    "Dataset",
    "Demographics",
    "Identity",
    "IdentityAnalyticsError",
    "LoadError",
    "LoadReport",
    "NotFound",
    "OverlapTable",
    "PrivacyError",
    "PrivacyPolicy",
    "Profile",
    "ProfileStore",
    "PseudonymKeyWarning",
    "PublicProfile",
    "RiskReport",
    "Segment",
    "SegmentResult",
    "SourceCounts",
    "SourceError",
    "Vocabulary",
    "__version__",
]
