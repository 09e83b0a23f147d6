from services.common.migrations import run_env
from services.volunteer.models import Base

run_env(Base.metadata)
