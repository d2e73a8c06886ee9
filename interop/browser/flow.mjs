// Drives a real browser (Debian's chromium) through keybound's authorization-code flow, as a
// user would: open the authorization URL, sign in, allow, and land on the client's redirect URI.
//
//   node flow.mjs AUTHORIZATION_URL USERNAME PASSWORD SCREENSHOT_DIR REDIRECT_URI_PREFIX
//
// Screenshots: 1-login.png, 2-consent.png, 3-callback.png in SCREENSHOT_DIR. On success prints
// one JSON line {"callback": "<the full redirect URL>"}; on failure says which step failed
// (with the page's URL, title and text, and a failure.png) and exits nonzero.
// KEYBOUND_CHROMIUM names the browser (default /usr/bin/chromium).

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 20_000;

const [authorizationUrl, username, password, screenshotDir, redirectPrefix] = process.argv.slice(2);
if (!redirectPrefix) {
  console.error('usage: node flow.mjs AUTHORIZATION_URL USERNAME PASSWORD SCREENSHOT_DIR REDIRECT_URI_PREFIX');
  process.exit(2);
}
const executablePath = process.env.KEYBOUND_CHROMIUM || '/usr/bin/chromium';
mkdirSync(screenshotDir, { recursive: true });
const userDataDir = mkdtempSync(join(tmpdir(), 'keybound-chromium-'));

let context;
let page;
let current = 'launch chromium';

async function step(name, action) {
  current = name;
  return action();
}

async function describePage() {
  if (!page) return '';
  try {
    const text = (await page.locator('body').innerText({ timeout: 2_000 })).slice(0, 600);
    return `\n  page URL: ${page.url()}\n  title: ${await page.title()}\n  text: ${JSON.stringify(text)}`;
  } catch {
    return `\n  page URL: ${page.url()}`;
  }
}

async function shoot(name) {
  await page.screenshot({ path: join(screenshotDir, name), fullPage: true });
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    timeout: STEP_TIMEOUT_MS,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  page = context.pages()[0] ?? (await context.newPage());

  await step('open the authorization URL (login page)', async () => {
    const response = await page.goto(authorizationUrl);
    if (!response || response.status() !== 200) {
      throw new Error(`the authorization endpoint answered ${response ? response.status() : 'nothing'}, not 200`);
    }
    if (!(await page.title()).includes('Sign in')) {
      throw new Error(`the title is ${JSON.stringify(await page.title())}, expected it to contain "Sign in"`);
    }
    await page.locator('form[action="/login"] input[name="username"]').waitFor();
    await shoot('1-login.png');
  });

  await step('sign in (consent page)', async () => {
    await page.locator('input[name="username"]').fill(username);
    await page.locator('input[name="password"][type="password"]').fill(password);
    const [response] = await Promise.all([
      page.waitForNavigation(),
      page.locator('button[type="submit"]', { hasText: 'Sign in' }).click(),
    ]);
    if (!response || response.status() !== 200) {
      throw new Error(`POST /login answered ${response ? response.status() : 'nothing'}, not 200 with the consent page`);
    }
    await page.locator('form[action="/consent"] button[name="decision"][value="allow"]').waitFor();
    if (!(await page.title()).includes('Allow')) {
      throw new Error(`the title is ${JSON.stringify(await page.title())}, expected it to contain "Allow"`);
    }
    await shoot('2-consent.png');
  });

  await step('allow (redirect to the client)', async () => {
    const [consent] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/consent'),
      page.waitForURL((url) => url.href.startsWith(redirectPrefix)),
      page.locator('button[name="decision"][value="allow"]').click(),
    ]);
    if (consent.status() !== 303) {
      throw new Error(`POST /consent answered ${consent.status()}, not a 303 redirect`);
    }
    await shoot('3-callback.png');
  });

  console.log(JSON.stringify({ callback: page.url() }));
} catch (error) {
  const where = await describePage();
  if (page) {
    await page.screenshot({ path: join(screenshotDir, 'failure.png'), fullPage: true }).catch(() => {});
  }
  console.error(`flow.mjs: step "${current}" failed: ${error.message.split('\n')[0]}${where}`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
