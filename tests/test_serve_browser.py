"""The page in a real browser: headless Debian chromium driven by Selenium (marker `browser`,
not in the default run; `VISTOK_BROWSER=1 bash tools/setup.sh` installs chromium and
chromium-driver). Upload a bundled image, move the slider, download-size and error text, and a
screenshot into the test's tmp dir (`VISTOK_SCREENSHOT=path` copies it there too, as the
README's `reports/serve/screenshot.png` was made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def server(one_thread):
    from tokenizers_vis.serve import Page, Server

    page = Page()
    with Server(page, port=0) as running:
        yield running
    page.close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("no chromium / chromedriver: VISTOK_BROWSER=1 bash tools/setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def until(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def decoded_at(driver, k: int) -> str:
    """Wait until the page shows the decode of k tokens; its image's src."""
    card = driver.find_element("id", "card-decoded")
    until(driver, lambda d: card.get_attribute("data-k") == str(k))
    return driver.find_element("id", "decoded-img").get_attribute("src")


def test_upload_slider_download_and_errors(server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    label, image = next(v for k, v in server.page.examples().items() if k.startswith("emoji"))
    source = tmp_path / "emoji.png"
    image.save(source)
    browser.get(server.url)
    until(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    browser.find_element("id", "upload").send_keys(str(source))
    slider = browser.find_element("id", "k")
    slider.send_keys(Keys.HOME)  # k = 1
    first = decoded_at(browser, 1)
    card = browser.find_element("id", "card-decoded")
    assert float(card.get_attribute("data-bytes")) == 1 * 12 / 8  # k * bits / 8
    assert "bytes 1.5 B" in browser.find_element("id", "decoded-stats").text
    for _ in range(7):
        slider.send_keys(Keys.ARROW_RIGHT)  # the slider moves through k = 2 .. 8
    last = decoded_at(browser, 8)
    assert last != first  # the decoded image changed
    assert float(card.get_attribute("data-bytes")) == 8 * 12 / 8
    assert "bytes 12 B" in browser.find_element("id", "decoded-stats").text
    until(browser, lambda d: len(d.find_elements("css selector", "#strip figure")) == 7)
    assert "k=64" in browser.find_element("id", "strip").text
    assert browser.find_element("id", "ids").text.startswith("tile 0: ")
    link = browser.find_element("id", "download")
    assert "k = 8" in link.text and "k=8" in link.get_attribute("href")
    for card_id in ("card-jpeg", "card-webp"):
        assert "PSNR" in browser.find_element("id", card_id).text
    assert browser.find_element("id", "error").get_attribute("hidden")  # no error so far
    screenshot = tmp_path / "screenshot.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("VISTOK_SCREENSHOT"):
        Path(os.environ["VISTOK_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, os.environ["VISTOK_SCREENSHOT"])

    good = server.page.models.get("emoji32").codec.encode_image(image, num_tokens=8)
    corrupted = tmp_path / "corrupted.vtok"
    corrupted.write_bytes(good[:-6] + bytes([good[-6] ^ 0xFF]) + good[-5:])
    browser.find_element("id", "vtok-upload").send_keys(str(corrupted))
    error = browser.find_element("id", "error")
    until(browser, lambda d: error.is_displayed())
    assert "corrupted" in error.text and "Traceback" not in error.text
    browser.save_screenshot(str(tmp_path / "error.png"))

    slider.send_keys(Keys.END)  # the server still serves after the bad file
    decoded_at(browser, 64)
    assert float(card.get_attribute("data-bytes")) == 64 * 12 / 8


def test_generation_tab_samples_a_grid(server, browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    until(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    browser.find_element("id", "tab-generate").click()
    Select(browser.find_element("id", "gen-class")).select_by_value("smileys")
    browser.execute_script(  # a short sequence: k = 8
        "const k = document.getElementById('gen-k'); k.value = 8;"
        "k.dispatchEvent(new Event('input'));"
    )
    assert browser.find_element("id", "gen-k-out").text == "8"
    count = browser.find_element("id", "gen-n")
    count.clear()
    count.send_keys("3")
    browser.find_element("id", "gen-run").click()
    until(browser, lambda d: len(d.find_elements("css selector", "#gen-grid img")) == 3, 120)
    assert "smileys" in browser.find_element("id", "gen-grid").text
    assert not browser.find_element("id", "error").is_displayed()
    browser.save_screenshot(str(tmp_path / "generation.png"))


def test_example_photo_tiles_and_the_rectified_flow_decoder(server, browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    until(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    photos = [o for o in browser.find_elements("css selector", "#example option")
              if o.get_attribute("value").startswith("photo")]  # fmt: skip
    assert photos, "no held-out photo among the examples"
    Select(browser.find_element("id", "example")).select_by_value(photos[0].get_attribute("value"))
    until(browser, lambda d: "tiles of 32x32 px" in d.find_element("id", "layout-text").text)
    assert "tile layout" in browser.find_element("id", "layout-text").text
    Select(browser.find_element("id", "example")).select_by_index(1)  # a held-out emoji
    vit = decoded_at(browser, 16)
    browser.execute_script(  # few sampling steps: the test is about the page, not the sampler
        "const s = document.getElementById('steps'); s.value = 2; s.dataset.touched = '1';"
        "s.dispatchEvent(new Event('input'));"
    )
    assert browser.find_element("id", "steps-out").get_attribute("textContent") == "2"
    Select(browser.find_element("id", "decoder")).select_by_value("emoji32_rf")
    caption = browser.find_element("css selector", "#card-decoded figcaption")
    until(browser, lambda d: caption.text == "Tokens (emoji32_rf)", 120)
    assert browser.find_element("id", "sampling").is_displayed()
    assert browser.find_element("id", "decoded-img").get_attribute("src") != vit
    assert not browser.find_element("id", "error").is_displayed()
    browser.save_screenshot(str(tmp_path / "rectified_flow.png"))
