"""The web console in a real browser (Debian chromium), and what it may serve without a key.

One server with API keys on a fresh data directory: the page asks for the key, installs
wheels through the page (an upload, and a URL on a loopback server), runs tools through the
forms generated from their schemas (a plain call, a stream, a secret config), shows
processes and the log, and deletes a package after the confirmation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec

from hiagent_host.api.routes import OPERATIONS
from tests.api.browser import artefacts_on_failure, click, wait_for
from tests.api.conftest import API_KEY
from tests.api.support import LiveServer, WheelServer, envelope_error, free_port, write_config

SECRET_VALUE: Final = "sk-console-secret-5f0e1d"


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("console")
    port = free_port()
    config = write_config(
        root / "runtime.toml", root / "data", wheelhouse, port, auth={"api_keys": [API_KEY]}
    )
    live = LiveServer(config, port, root / "server.log").start()
    try:
        yield live
    finally:
        live.stop()


def _login(driver: WebDriver, server: LiveServer) -> None:
    driver.get(server.url + "/")
    wait_for(driver, ec.url_to_be(server.url + "/console"))
    key = wait_for(driver, ec.visibility_of_element_located((By.ID, "apikey")))
    key.send_keys(API_KEY)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(driver, ec.invisibility_of_element_located((By.ID, "login")))


def _install_finished(driver: WebDriver) -> WebElement:
    return wait_for(
        driver, ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=installed]"))
    )


def _tool(driver: WebDriver, plugin: str, tool: str) -> WebElement:
    selector = f'#package-detail [data-plugin="{plugin}"] details[data-tool="{tool}"]'
    details = wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, selector)))
    if details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").click()
    return details


def _field(tool: WebElement, name: str) -> WebElement:
    return tool.find_element(By.CSS_SELECTOR, f'[name="{name}"]')


def _run(driver: WebDriver, tool: WebElement) -> WebElement:
    tool.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    return tool.find_element(By.CSS_SELECTOR, "[data-testid=tool-result]")


def test_an_operator_installs_runs_and_deletes_packages_through_the_console(
    console_server: LiveServer, browser: WebDriver, wheels: dict[str, Path]
) -> None:
    driver = browser
    with artefacts_on_failure(driver, "console-journey"):
        _login(driver, console_server)
        wait_for(driver, ec.text_to_be_present_in_element((By.ID, "packages-table"), "No packages"))

        # Upload the clock wheel from disk; the progress ends with the package installed.
        clock = wheels["clock"]
        driver.find_element(By.ID, "upload-file").send_keys(str(clock))
        driver.find_element(By.ID, "upload-submit").click()
        assert "hiagent-plugin-clock 0.1.0" in _install_finished(driver).text
        row = wait_for(
            driver,
            ec.presence_of_element_located(
                (By.CSS_SELECTOR, '#packages-table tr[data-package="hiagent-plugin-clock"]')
            ),
        )
        assert "时间工具" in row.text

        # Run a tool through the form generated from its input schema.
        tool = _tool(driver, "时间工具", "convert_time")
        assert _field(tool, "timezone").get_attribute("value") == "UTC"  # the schema's default
        _field(tool, "time").send_keys("2024-05-01T12:00:00+00:00")
        _field(tool, "timezone").clear()
        _field(tool, "timezone").send_keys("Asia/Shanghai")
        out = _run(driver, tool)
        result = wait_for(
            driver, lambda d: out.find_elements(By.CSS_SELECTOR, "[data-testid=result]")
        )
        assert json.loads(result[0].text) == "2024-05-01T20:00:00+08:00"

        # A plugin error is shown with its code and message.
        _field(tool, "timezone").clear()
        _field(tool, "timezone").send_keys("Mars/Olympus")
        out = _run(driver, tool)
        error = wait_for(
            driver, lambda d: out.find_elements(By.CSS_SELECTOR, "[data-testid=error]")
        )
        assert error[0].text.startswith("UnknownTimezone: unknown timezone 'Mars/Olympus'")

        # The upload's job is listed with the others.
        driver.find_element(By.CSS_SELECTOR, 'nav [data-view="jobs"]').click()
        wait_for(
            driver,
            lambda d: any(
                "finished" in row.text and clock.name in row.text
                for row in d.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-job]")
            ),
        )

        # The process that served the calls is listed, live.
        driver.find_element(By.CSS_SELECTOR, 'nav [data-view="processes"]').click()
        wait_for(
            driver,
            ec.text_to_be_present_in_element((By.ID, "processes-table"), "hiagent-plugin-clock"),
        )
        driver.find_element(By.CSS_SELECTOR, 'nav [data-view="packages"]').click()

        # Delete it, after the confirmation.
        click(
            driver, '#packages-table tr[data-package="hiagent-plugin-clock"] [data-testid=delete]'
        )
        alert = wait_for(driver, ec.alert_is_present())
        assert "Delete hiagent-plugin-clock 0.1.0?" in alert.text
        alert.accept()
        wait_for(
            driver,
            ec.invisibility_of_element_located(
                (By.CSS_SELECTOR, '#packages-table tr[data-package="hiagent-plugin-clock"]')
            ),
        )
    response = httpx.post(
        f"{console_server.url}/v1/ListPackages",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={},
        timeout=30,
    )
    assert [p["name"] for p in response.json()["data"]] == []


def test_streamed_items_appear_as_they_arrive_and_secrets_stay_in_their_field(
    console_server: LiveServer,
    browser: WebDriver,
    wheel_server: WheelServer,
    wheels: dict[str, Path],
) -> None:
    driver = browser
    with artefacts_on_failure(driver, "console-stream-secret"):
        _login(driver, console_server)

        # Install from a URL (the loopback wheel server), then stream a tool.
        driver.find_element(By.ID, "url-uri").send_keys(
            f"{wheel_server.url}/{wheels['stream'].name}"
        )
        driver.find_element(By.CSS_SELECTOR, "#url-form button").click()
        _install_finished(driver)
        tool = _tool(driver, "stream", "numbers")
        _field(tool, "n").clear()
        _field(tool, "n").send_keys("3")
        out = _run(driver, tool)
        wait_for(driver, lambda d: "done: 3 item(s)" in out.text)
        items = out.find_elements(By.CSS_SELECTOR, "[data-testid=stream-items] li")
        assert [i.text for i in items] == ["0", "1", "2"]

        # A secret config field is a password input; its value is never shown back.
        driver.find_element(By.ID, "upload-file").send_keys(str(wheels["secret"]))
        driver.find_element(By.ID, "upload-submit").click()
        _install_finished(driver)
        plugin = wait_for(
            driver,
            ec.presence_of_element_located(
                (By.CSS_SELECTOR, '#package-detail [data-plugin="secret"]')
            ),
        )
        secret = plugin.find_element(By.CSS_SELECTOR, '[name="api_key"]')
        assert secret.get_attribute("type") == "password"
        secret.send_keys(SECRET_VALUE)
        tool = _tool(driver, "secret", "has_key")
        out = _run(driver, tool)
        result = wait_for(
            driver, lambda d: out.find_elements(By.CSS_SELECTOR, "[data-testid=result]")
        )
        assert json.loads(result[0].text) == {"has_key": True, "region": "cn"}
        assert SECRET_VALUE not in driver.page_source
        assert SECRET_VALUE not in json.dumps(driver.execute_script("return {...sessionStorage}"))


def test_without_a_key_the_console_shows_no_data_and_every_data_route_refuses(
    console_server: LiveServer,
) -> None:
    page = httpx.get(f"{console_server.url}/", follow_redirects=True, timeout=30)
    assert page.status_code == 200
    assert page.url.path == "/console"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    script = httpx.get(f"{console_server.url}/console/console.js", timeout=30)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    for op in OPERATIONS:
        if op.public:
            continue
        response = httpx.request(op.method, f"{console_server.url}{op.path}", json={}, timeout=30)
        assert response.status_code == 401, op.path
        assert envelope_error(response)["code"] == "Unauthorized"


def test_the_package_log_tail_masks_api_keys_and_bearer_tokens(
    console_server: LiveServer, wheels: dict[str, Path]
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=console_server.url, headers=headers, timeout=180) as http:
        noisy = wheels["noisy"]
        meta = http.post(
            "/v1/InstallPackage", json={"uri": noisy.as_uri(), "filename": noisy.name}
        ).json()["data"]
        ref = {"pkg": meta["name"], "version": meta["version"]}
        leak = f"key={API_KEY} header=Bearer tok-1234567"
        call = ref | {"plugin": "noisy", "tool": "chatter", "input": {"text": leak}}
        assert http.post("/v1/RunPluginTool", json=call).json()["data"] == {"text": leak}

        log = http.post("/v1/GetPackageLog", json=ref | {"max_lines": 3}).json()["data"]
        assert len(log["lines"]) == 3
        assert log["truncated"] is True
        text = "\n".join(http.post("/v1/GetPackageLog", json=ref).json()["data"]["lines"])
        assert "noisy print: key=*** header=Bearer ***" in text
        assert API_KEY not in text
        assert "tok-1234567" not in text

        missing = http.post("/v1/GetPackageLog", json={"pkg": "nope", "version": "1.0"})
        assert envelope_error(missing)["code"] == "PackageNotFound"
