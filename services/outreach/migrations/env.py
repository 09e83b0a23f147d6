from services.common.migrations import run_env
from services.outreach.models import Base

run_env(Base.metadata)
