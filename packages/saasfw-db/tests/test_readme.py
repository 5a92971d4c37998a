"""The README's example runs as written (docs true to the code)."""

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


async def test_readme_service_example_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # DbSettings() puts the SQLite file under ./var
    service, snippet = python_blocks()[:2]
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(service, str(README), "exec"), namespace)  # noqa: S102 - our own docs
    app = namespace["app"]
    async with app.router.lifespan_context(app):
        assert (tmp_path / "var" / "notes" / "notes.db").is_file()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            created = (await client.post("/notes", json={"title": "hello"})).json()
            assert created["version"] == 1
            duplicate = await client.post("/notes", json={"title": "hello"})
            assert duplicate.status_code == 409
            renamed = await client.patch(
                f"/notes/{created['id']}", json={"title": "hi"}, headers={"If-Match": "1"}
            )
            assert renamed.json()["version"] == 2
            stale = await client.patch(
                f"/notes/{created['id']}", json={"title": "x"}, headers={"If-Match": "1"}
            )
            assert stale.status_code == 409
            page = (await client.get("/notes", params={"limit": "5"})).json()
            assert [note["title"] for note in page["items"]] == ["hi"]
            assert (await client.get("/notes", params={"sort": "secret"})).status_code == 400
            assert (await client.delete(f"/notes/{created['id']}")).status_code == 204
            assert (await client.delete(f"/notes/{created['id']}")).status_code == 404
        wrapped = "async def _snippet() -> None:\n" + textwrap.indent(snippet, "    ")
        exec(compile(wrapped, str(README), "exec"), namespace)  # noqa: S102
        await namespace["_snippet"]()
        async with namespace["db"].unit_of_work() as uow:
            titles = [n.title for n in await namespace["NoteRepository"](uow.session).list()]
        assert titles == ["first"]


def block_with(language: str, needle: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (found,) = [block for block in blocks if needle in block]
    return str(found)


async def test_readme_start_up_step_runs_as_written(tmp_path: Path) -> None:
    from saasfw.db import Database, DbSettings, SchemaBehindError

    class Registry:  # the add() of saasfw.k8s's HealthRegistry (not a dependency of db)
        def __init__(self) -> None:
            self.checks: dict[str, Any] = {}

        def add(self, name: str, check: Any) -> None:
            self.checks[name] = check

    snippet = block_with("python", "prepare_schema(")
    wrapped = "async def _snippet() -> None:\n" + textwrap.indent(snippet, "    ")
    versions = Path(__file__).parent / "migrations" / "versions"
    for migrate_on_start in (True, False):
        db = Database(
            DbSettings(
                data_dir=tmp_path / str(migrate_on_start), migrate_on_start=migrate_on_start
            ),
            service="notes",
        )
        namespace: dict[str, Any] = {"db": db, "VERSIONS_DIR": versions, "registry": Registry()}
        exec(compile(wrapped, str(README), "exec"), namespace)  # noqa: S102 - our own docs
        try:
            if migrate_on_start:
                await namespace["_snippet"]()
                assert (await namespace["registry"].checks["schema"].status()).state == "at_head"
            else:  # the documented "not ready until the step has run"
                with pytest.raises(SchemaBehindError):
                    await namespace["_snippet"]()
        finally:
            await db.close()


def test_readme_schema_mismatch_body_is_the_real_one() -> None:
    from saasfw.db import SchemaMismatchError

    documented = json.loads(block_with("json", "db.schema_mismatch"))
    assert documented["detail"] == SchemaMismatchError("table", "widgets").detail
    assert documented["status"] == SchemaMismatchError.status
