"""The errors the package manager raises, each a `HostError` with its stable code."""

from __future__ import annotations

from hiagent_host.errors import (
    ALREADY_INSTALLED,
    CANCELLED,
    DOWNLOAD_FAILED,
    FORBIDDEN,
    INSTALL_FAILED,
    INVALID_PACKAGE,
    INVALID_REQUEST,
    PACKAGE_BUSY,
    PACKAGE_NOT_FOUND,
    HostError,
    NotFound,
)


class InvalidRequest(HostError):
    """A uri, file name, package name or version that can never name a package."""

    code = INVALID_REQUEST
    http_status = 422  # InvalidRequest has one status everywhere


class Forbidden(HostError):
    """A `file://` path outside `packages.allowed_file_roots`."""

    code = FORBIDDEN
    http_status = 403


class InvalidPackage(HostError):
    """The wheel is unusable; `data["problems"]` lists every problem found."""

    code = INVALID_PACKAGE
    http_status = 400


class AlreadyInstalled(HostError):
    """This version is installed and the caller did not ask to replace it."""

    code = ALREADY_INSTALLED
    http_status = 409


class DownloadFailed(HostError):
    """The wheel could not be fetched; `data` has the url and the status or reason."""

    code = DOWNLOAD_FAILED
    http_status = 502


class InstallFailed(HostError):
    """The venv could not be built or did not pass its probe; `data` says why."""

    code = INSTALL_FAILED
    http_status = 500


class PackageNotFound(NotFound):
    """No installed package version matches the name and version given."""

    code = PACKAGE_NOT_FOUND


class PackageBusy(HostError):
    """Another install or delete of the package held its lock for too long."""

    code = PACKAGE_BUSY
    http_status = 409


class Cancelled(HostError):
    """The caller cancelled the install; nothing of it remains."""

    code = CANCELLED
    http_status = 409
