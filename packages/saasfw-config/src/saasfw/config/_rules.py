"""Production safety rules: an open registry, built-in checks and start-up enforcement.

Every package exposes its checks as plain callables; the application (or ``saasfw.app``)
registers them here. ``enforce_production_rules`` runs all of them at once: where a
violated rule is fatal (production by default) it raises one ``UnsafeSettingsError``
listing every violation; elsewhere the violations are logged as warnings.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pydantic import BaseModel, Secret, SecretBytes, SecretStr

from saasfw.config._environments import ENVIRONMENTS
from saasfw.config._errors import ConfigError, Problem, Redactor, UnsafeSettingsError
from saasfw.config._loader import LoadedSettings
from saasfw.config._lookup import value_at
from saasfw.config._state import dotted
from saasfw.core import PRODUCTION_ONLY, ProductionRule, RuleContext, Violation

logger = logging.getLogger("saasfw.config")

EVERY_ENVIRONMENT: frozenset[str] = frozenset(ENVIRONMENTS)
MIN_SECRET_LENGTH = 32
EXIT_UNSAFE = 78  # EX_CONFIG from sysexits.h: "configuration error"

# Compared after lower-casing and dropping everything but letters and digits.
PLACEHOLDER_SECRETS: frozenset[str] = frozenset(
    {
        "admin",
        "changeit",
        "changeme",
        "default",
        "dev",
        "development",
        "dummy",
        "example",
        "fixme",
        "insecure",
        "letmein",
        "mysecret",
        "none",
        "notasecret",
        "null",
        "passw0rd",
        "password",
        "placeholder",
        "qwerty",
        "root",
        "secret",
        "secretkey",
        "supersecret",
        "test",
        "todo",
        "xxx",
        "yoursecretkey",
        "123456",
        "12345678",
        "1234567890",
    }
)


class ProductionRules:
    """An ordered, open registry of ``ProductionRule``s with unique names."""

    def __init__(self, rules: Iterable[ProductionRule] = ()) -> None:
        self._rules: dict[str, ProductionRule] = {}
        for rule in rules:
            self.add(rule)

    def add(self, rule: ProductionRule) -> ProductionRule:
        """Register ``rule``; a second rule with the same name is a programming error."""
        if rule.name in self._rules:
            raise ValueError(f"a production rule named {rule.name!r} is already registered")
        unknown = rule.fatal_in - EVERY_ENVIRONMENT
        if unknown:
            raise ValueError(f"rule {rule.name!r}: unknown environments {sorted(unknown)}")
        self._rules[rule.name] = rule
        return rule

    def add_section_check(
        self,
        name: str,
        section: str,
        check: Callable[[Any], Iterable[str]],
        *,
        fatal_in: frozenset[str] = PRODUCTION_ONLY,
    ) -> ProductionRule:
        """Register a package's plain ``check(section_settings) -> messages`` callable.

        ``section`` is the dotted path of that package's settings inside the application
        model (``"security"``); when the model has no such section the rule holds.
        """

        def run(settings: Any, context: RuleContext) -> Iterator[str | Violation]:
            value = value_at(settings, section)
            if value is None:
                return
            for message in check(value):
                yield Violation(name, message, section)

        return self.add(ProductionRule(name, run, fatal_in))

    def remove(self, name: str) -> None:
        del self._rules[name]

    def __iter__(self) -> Iterator[ProductionRule]:
        return iter(list(self._rules.values()))

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def evaluate(self, settings: Any, context: RuleContext) -> list[Violation]:
        """Run every rule; a rule that raises counts as violated (fail closed)."""
        found: list[Violation] = []
        for rule in self:
            fatal = context.env in rule.fatal_in
            try:
                results = list(rule.check(settings, context))
            except Exception as exc:  # a broken check must not let start-up through
                results = [f"the check itself failed ({type(exc).__name__}: {exc})"]
            for item in results:
                if isinstance(item, Violation):
                    found.append(Violation(rule.name, item.message, item.path, fatal))
                else:
                    found.append(Violation(rule.name, str(item), "", fatal))
        return found


# -- built-in rules ---------------------------------------------------------------------------


def _walk(
    value: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Any, Any]]:
    """Yield (path, value, field default) for every leaf reachable from a settings object."""
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            child = getattr(value, name)
            yield (*path, name), child, info.default
            yield from _walk(child, (*path, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield (*path, str(key)), item, None
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield (*path, index), item, None
            yield from _walk(item, (*path, index))


def _normalized(secret: str) -> str:
    return "".join(ch for ch in secret.lower() if ch.isalnum())


def secret_weakness(secret: str | bytes, default: Any = None) -> str | None:
    """Why ``secret`` is unsafe for production (empty, default, placeholder, short), or None."""
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    if not text.strip():
        return "secret is empty"
    if isinstance(default, (SecretStr, SecretBytes)) and default.get_secret_value() == secret:
        return "secret is the model's default value; set a real one"
    normalized = _normalized(text)
    if normalized in PLACEHOLDER_SECRETS or "changeme" in normalized or len(set(normalized)) <= 1:
        return "secret is a well-known placeholder value"
    if len(text) < MIN_SECRET_LENGTH:
        return f"secret is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def _url_password(secret: str | bytes) -> tuple[bool, str | None]:
    """(is it a URL, its password): a secret URL is judged by the password inside it."""
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    scheme, sep, _ = text.partition("://")
    if not sep or not scheme or not scheme.replace("+", "").replace("-", "").isalnum():
        return False, None
    try:
        return True, urlsplit(text).password
    except ValueError:
        return True, None


def _weak_secrets(settings: Any, context: RuleContext) -> Iterator[Violation]:
    for path, value, default in _walk(settings, ()):
        if not isinstance(value, (SecretStr, SecretBytes)):
            continue
        secret = value.get_secret_value()
        is_url, password = _url_password(secret)
        if is_url:
            # A connection URL is a secret because of its password; without one (memory://,
            # a socket path, IAM auth) there is nothing here to judge.
            reason = None if password is None else secret_weakness(password)
            if reason is not None:
                yield Violation("secrets.strength", f"password in URL: {reason}", dotted(path))
            continue
        reason = secret_weakness(secret, default)
        if reason is not None:
            yield Violation("secrets.strength", reason, dotted(path))


def _debug_off(settings: Any, context: RuleContext) -> Iterator[Violation]:
    for path, value, _ in _walk(settings, ()):
        if path and path[-1] == "debug" and value is True:
            yield Violation("debug.off", "debug mode is on", dotted(path))


def weak_secrets_rule(*, fatal_in: frozenset[str] = PRODUCTION_ONLY) -> ProductionRule:
    """Every SecretStr/SecretBytes is set, not a placeholder, not the model's default, and
    at least 32 characters long (a value shorter than that is guessable or a typo)."""
    return ProductionRule(
        "secrets.strength",
        _weak_secrets,
        fatal_in,
        description="every secret is set, not a placeholder or the model default, and at "
        f"least {MIN_SECRET_LENGTH} characters long",
    )


def debug_rule(*, fatal_in: frozenset[str] = PRODUCTION_ONLY) -> ProductionRule:
    """No field named ``debug`` (at any depth) is true."""
    return ProductionRule("debug.off", _debug_off, fatal_in, description="debug is off")


def default_rules() -> ProductionRules:
    """A fresh registry holding the built-in rules: secret strength, debug off, DB isolation."""
    from saasfw.config._isolation import database_isolation_rule

    return ProductionRules([weak_secrets_rule(), debug_rule(), database_isolation_rule()])


# -- enforcement --------------------------------------------------------------------------------


def _secret_redactor(settings: Any) -> Redactor:
    redact = Redactor()
    for _, value, _ in _walk(settings, ()):
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, SecretBytes):
            text = value.get_secret_value().decode("utf-8", "replace")
        elif isinstance(value, Secret):
            text = str(value.get_secret_value())
        else:
            continue
        is_url, password = _url_password(text)
        if is_url and password is None and "@" not in text:
            # A connection URL is secret for its credentials; one without any (memory://,
            # redis://cache:6379/0) is not, and masking it would hide harmless values
            # such as "memory" in every message that names a storage.
            continue
        redact.add(text)
        if password:
            redact.add(password)
    return redact


def enforce_production_rules(
    loaded: LoadedSettings[Any],
    rules: ProductionRules | None = None,
    *,
    log: logging.Logger | None = None,
) -> list[Violation]:
    """Check ``loaded`` against ``rules`` (default: ``default_rules()``) before serving.

    Returns the (non-fatal) violations after logging each as a warning. If any violation is
    fatal in ``loaded.env``, raises ``UnsafeSettingsError`` listing every violation instead.
    Messages are scrubbed of every secret value the settings hold.
    """
    registry = default_rules() if rules is None else rules
    context = RuleContext(loaded.service, loaded.env, loaded.config_dir, loaded.sources)
    redact = _secret_redactor(loaded.settings)
    violations = [
        Violation(v.rule, redact(v.message), v.path, v.fatal)
        for v in registry.evaluate(loaded.settings, context)
    ]
    if any(v.fatal for v in violations):
        raise UnsafeSettingsError(
            [
                Problem(
                    v.path,
                    f"rule {v.rule}{_origin(loaded, v.path)}",
                    v.message,
                    "fatal" if v.fatal else "warning",
                )
                for v in violations
            ],
            summary=f"unsafe settings for service '{loaded.service}' in {loaded.env}; "
            "refusing to start",
        )
    for violation in violations:
        (log or logger).warning(
            "unsafe setting (a warning in %s): %s%s",
            loaded.env,
            violation,
            _origin(loaded, violation.path),
        )
    return violations


def _origin(loaded: LoadedSettings[Any], path: str) -> str:
    """Where the offending value came from, when the violation names one setting."""
    source = loaded.sources.get(path) if path else None
    if source is None:
        return ""
    return "; model default" if source == "default" else f"; set by {source}"


def redact_secrets(settings: Any, text: str) -> str:
    """``text`` with every secret value ``settings`` holds masked (credential-free URLs kept).

    For messages built outside the rules, e.g. an exception raised while a service starts.
    """
    return _secret_redactor(settings)(text)


def exit_if_unsafe(
    loaded: LoadedSettings[Any],
    rules: ProductionRules | None = None,
    *,
    log: logging.Logger | None = None,
) -> list[Violation]:
    """``enforce_production_rules``, but print the report and exit 78 instead of raising.

    Meant for start-up code that runs before a port is bound.
    """
    try:
        return enforce_production_rules(loaded, rules, log=log)
    except ConfigError as exc:
        _exit_with(exc)


def _exit_with(exc: ConfigError) -> NoReturn:
    print(exc.report(), file=sys.stderr)
    raise SystemExit(EXIT_UNSAFE)
