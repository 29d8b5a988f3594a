// Drives Debian's noVNC (vnc_lite.html) in headless Debian Chromium, for tests/tests/vnc.rs:
//
//   node novnc.js URL OUT.png|- [move:X:Y] [down] [up] [wheel:DY] [sleep:MS] ...
//
// Waits until noVNC says it is connected and its canvas has stopped changing, writes the
// canvas (the framebuffer as noVNC drew it) to OUT.png, then does the steps with the mouse,
// X and Y being framebuffer pixels (the pointer goes to the pixel's centre).
const fs = require('fs');
const { chromium } = require('playwright-core');

(async () => {
  const [url, out, ...steps] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1200 } });
    await page.goto(url);
    await page.waitForFunction(
      () => (document.getElementById('status') || {}).textContent.startsWith('Connected'),
      null, { timeout: 30000 });
    const grab = () => page.evaluate(
      () => document.querySelector('#screen canvas').toDataURL('image/png'));
    // The whole picture: two grabs half a second apart that agree.
    let last = '';
    for (let i = 0; i < 40; i++) {
      await page.waitForTimeout(500);
      const now = await grab();
      if (now === last) break;
      last = now;
    }
    if (out !== '-') fs.writeFileSync(out, Buffer.from(last.split(',')[1], 'base64'));
    // The page may show the canvas scaled: aim through the scale at the pixel's centre.
    const box = await page.locator('#screen canvas').boundingBox();
    const size = await page.evaluate(() => {
      const c = document.querySelector('#screen canvas');
      return [c.width, c.height];
    });
    const at = (x, y) => [box.x + (Number(x) + 0.5) * box.width / size[0],
      box.y + (Number(y) + 0.5) * box.height / size[1]];
    for (const step of steps) {
      const [op, a, b] = step.split(':');
      if (op === 'move') await page.mouse.move(...at(a, b));
      else if (op === 'down') await page.mouse.down();
      else if (op === 'up') await page.mouse.up();
      else if (op === 'wheel') await page.mouse.wheel(0, Number(a));
      else if (op === 'sleep') await page.waitForTimeout(Number(a));
      else throw new Error(`unknown step ${step}`);
    }
    await page.waitForTimeout(500);
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
