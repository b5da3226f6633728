"""The try-on page in a real headless browser (Debian's chromium and chromedriver, Selenium):
choose, press Try on, see the result at the photo's size; a bad upload shows the checker's
message; a good one is tried on; a plain photo is analysed (the shipped analyzer), its parsing
and pose shown, and tried on. The server runs in this process on a free port.

Needs `apt-get install -y chromium chromium-driver`; skipped (with that reason) without them,
except where MGVTON_REQUIRE_BROWSER is set (CI sets it), where it fails instead.
MGVTON_DEMO_SCREENSHOT=PATH keeps a screenshot of the page with a result, MGVTON_DEMO_MODEL=DIR
serves that model instead of the tests' 2-step one (docs/demo_page.png: make demo's model).
"""

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgvton_jax import constants, demo, export
from mgvton_jax.data import readers

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("MGVTON_REQUIRE_BROWSER"),
    reason="chromium and chromedriver are not installed (apt-get install -y chromium "
           "chromium-driver)")
TIMEOUT = 120


@pytest.fixture(scope="module")
def page(trained_pipeline, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    model = os.environ.get("MGVTON_DEMO_MODEL")  # e.g. make demo's, for the README picture
    if not model:
        model = tmp_path_factory.mktemp("page_model") / "model"
        export.export_model(trained_pipeline[0], model)
    server, temporary = demo.make_server(model, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1300,1250"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
        shutil.rmtree(temporary, ignore_errors=True)


def _wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(condition)


def _loaded(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#poses img")) > 1)


def _try_on(driver):
    """Presses Try on; (natural width, height) of the result image."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "tryon").click()
    result = _wait(driver, lambda d: d.find_elements(By.ID, "result") or
                   d.find_element(By.ID, "error").text.startswith("error"))
    assert result is not True, driver.find_element(By.ID, "error").text
    _wait(driver, lambda d: d.execute_script(
        "const i = document.getElementById('result'); return i.complete && i.naturalWidth"))
    return tuple(driver.execute_script(
        "const i = document.getElementById('result'); return [i.naturalWidth, i.naturalHeight]"))


def test_try_on_shows_the_result_at_the_photos_size(page, tmp_path):
    from selenium.webdriver.common.by import By

    driver, url = page
    _loaded(driver, url)
    driver.find_elements(By.CSS_SELECTOR, "#clothes img")[1].click()
    assert _try_on(driver) == (192, 256)  # the synthetic example photos are 192x256
    shown = {img.get_attribute("id") for img in driver.find_elements(By.CSS_SELECTOR,
                                                                     "#output img")}
    assert shown == {"result", "intermediate-parsing", "intermediate-warped_clothes",
                     "intermediate-coarse", "intermediate-composition_mask"}
    screenshot = Path(os.environ.get("MGVTON_DEMO_SCREENSHOT") or tmp_path / "page.png")
    driver.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] > 0


def test_a_bad_upload_shows_the_checkers_message_and_a_good_one_is_tried_on(
        page, synthetic_mpv, tmp_path):
    from selenium.webdriver.common.by import By

    driver, url = page
    _loaded(driver, url)
    group = sorted((synthetic_mpv / "all").iterdir())[1]
    photo = next(p for p in sorted(group.iterdir()) if "person" in p.name)
    parsing = synthetic_mpv / "all_parsing" / group.name / f"{photo.stem}.png"
    keypoints = synthetic_mpv / "all_person_clothes_keypoints" / group.name / \
        f"{photo.stem}_keypoints.json"
    rendering = tmp_path / "rendering.png"
    Image.fromarray(np.asarray(constants.LIP_PALETTE, np.uint8)[
        readers.read_parsing(parsing)]).save(rendering)

    def upload(parsing_file):
        for field, path in (("photo", photo), ("parsing", parsing_file),
                            ("keypoints", keypoints)):
            driver.find_element(By.ID, field).send_keys(str(path))
        driver.find_element(By.ID, "check").click()
        return _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li"))

    messages = upload(rendering)
    assert messages[0].get_attribute("class") == "error"
    assert "parsing.png: the parsing holds colours (mode RGB), not label ids: a rendering " \
        "in the lip palette" in messages[0].text
    assert "fix: python -m mgvton_jax.prep parsing-colours" in messages[0].text
    people = len(driver.find_elements(By.CSS_SELECTOR, "#people img"))
    upload(parsing)
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#people img")) == people + 1)
    assert "added as u1" in driver.find_element(By.ID, "messages").text
    assert _try_on(driver) == Image.open(photo).size


def test_a_plain_photo_is_analysed_shown_and_tried_on(page, tmp_path):
    from selenium.webdriver.common.by import By

    driver, url = page
    _loaded(driver, url)
    photo = export.SHIPPED_EXAMPLES / "test" / "image" / "004285_0.jpg"
    people = len(driver.find_elements(By.CSS_SELECTOR, "#people img"))
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    driver.find_element(By.ID, "check").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#people img")) == people + 1)
    for name in ("analysed-parsing", "analysed-pose"):
        assert _wait(driver, lambda d, name=name: d.execute_script(
            f"const i = document.getElementById('{name}'); return i && i.complete && "
            "i.naturalWidth"))
    assert "added as" in driver.find_element(By.ID, "messages").text
    assert _try_on(driver) == Image.open(photo).size
    # A photo without a person: the analyzer's one message, nothing added.
    blank = tmp_path / "blank.png"
    Image.new("RGB", (192, 256), "white").save(blank)
    driver.find_element(By.ID, "photo").send_keys(str(blank))
    driver.find_element(By.ID, "check").click()
    message = _wait(driver, lambda d: [li for li in d.find_elements(By.CSS_SELECTOR,
                                                                     "#messages li")
                                       if "no person found" in li.text])
    assert message[0].get_attribute("class") == "error"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#people img")) == people + 1
