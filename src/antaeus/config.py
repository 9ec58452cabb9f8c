"""Settings, read from the environment with the `ANTAEUS_` prefix (and a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalize_database_url(url: str) -> str:
    """Accept URLs as users write them; pick the async driver Antaeus uses.

    `postgresql://`, `postgres://` and `postgresql+psycopg://` become asyncpg;
    `sqlite:///file.db` becomes aiosqlite.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"database URL {url!r} has no scheme (e.g. sqlite:///antaeus.db)")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"unsupported database {scheme!r}: use sqlite:/// or postgresql://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANTAEUS_", env_file=".env", extra="ignore", case_sensitive=False
    )

    DATABASE_URL: str = Field(
        default="sqlite:///antaeus.db",
        description="sqlite:///path.db (default: antaeus.db here) or postgresql://user@host/db",
    )
    API_TOKEN: SecretStr | None = Field(
        default=None, description="one more valid API token, named 'env'"
    )
    HOST: str = Field(default="127.0.0.1", description="address `serve` listens on")
    PORT: int = Field(default=7000, ge=1, le=65535, description="port `serve` listens on")
    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024, description="request body limit")
    LOG_LEVEL: Literal["debug", "info", "warning", "error"] = "info"
    LOG_FORMAT: Literal["console", "json"] = "console"
    DB_POOL_SIZE: int = Field(default=10, ge=1, le=200)
    SQLITE_SYNCHRONOUS: Literal["NORMAL", "FULL"] = Field(
        default="FULL", description="FULL survives power loss; NORMAL survives process crashes"
    )
    TOKEN_CACHE_SECONDS: float = Field(
        default=5.0, ge=0, description="how soon a token revoked elsewhere stops working"
    )

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_url(cls, value: str) -> str:
        normalize_database_url(value)
        return value

    @property
    def async_database_url(self) -> str:
        return normalize_database_url(self.DATABASE_URL)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
