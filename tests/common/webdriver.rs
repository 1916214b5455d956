//! A minimal W3C WebDriver client (just what the browser test needs) over the harness's
//! HTTP client, driving Debian's headless Chromium through `chromedriver` on a free port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{TempDir, get, poll, send};

/// How long chromedriver may take to answer `/status` as ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`; killed on drop.
pub struct Chromedriver {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Chromedriver {
    /// Starts `chromedriver --port=<free>` and waits until it reports ready. Panics with a
    /// pointer to `.ci/test` (which installs `chromium` and `chromium-driver`) when missing.
    pub async fn start() -> Chromedriver {
        let dir = TempDir::new("chromedriver");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.local_addr().expect("local addr").port()
        };
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))
            .expect("chromedriver log file");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}); the browser test needs Debian's chromium \
                     and chromium-driver: run `bash .ci/test`, which installs them"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let mut driver = Chromedriver {
            child,
            url,
            _dir: dir,
        };
        let status_url = format!("{}/status", driver.url);
        let ready = poll(READY_WITHIN, || {
            let status_url = status_url.clone();
            let exited = driver.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(format!("chromedriver exited ({status})")));
                }
                // Not listening yet: connection refused. Probe with a plain TCP connect
                // first so the HTTP helper never panics on it.
                let addr = status_url.trim_start_matches("http://");
                let addr = addr.split('/').next().unwrap_or_default().to_owned();
                tokio::net::TcpStream::connect(addr).await.ok()?;
                let resp = get(&status_url, &[]).await;
                let body: Value = serde_json::from_str(&resp.body).ok()?;
                (body["value"]["ready"] == true).then_some(Ok(()))
            }
        })
        .await;
        match ready {
            Some(Ok(())) => driver,
            Some(Err(why)) => panic!("{why}\n{}", driver.log()),
            None => {
                driver.kill();
                panic!(
                    "chromedriver not ready within {READY_WITHIN:?}\n{}",
                    driver.log()
                )
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Asks chromedriver to close its browsers and exit (`GET /shutdown`, blocking: this
    /// runs from `drop`), gives it 5 s, then kills it.
    fn kill(&mut self) {
        let addr = self.url.trim_start_matches("http://").to_owned();
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request =
                format!("GET /shutdown HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new headless Chromium session with a fresh profile in its own temp dir.
    pub async fn session(&self) -> WebDriver {
        let profile = TempDir::new("chromium-profile");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let value = command(&self.url, "POST", "/session", Some(capabilities)).await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}\n{}", self.log()))
            .to_owned();
        WebDriver {
            base: format!("{}/session/{id}", self.url),
            _profile: profile,
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- chromedriver log ---\n{}", self.log());
        }
    }
}

/// Sends one WebDriver command and returns its `value`; panics on a WebDriver error.
async fn command(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{base}{path}");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let headers = [("content-type", "application/json; charset=utf-8")];
    let resp = send(method, &url, &headers, body).await;
    let parsed: Value = serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {resp}"));
    if resp.status != 200 {
        panic!("WebDriver {method} {path} failed: {}", parsed["value"]);
    }
    parsed["value"].clone()
}

/// One browser session; [`WebDriver::quit`] closes its browser, and so does dropping the
/// [`Chromedriver`] (which shuts down every session it still has).
pub struct WebDriver {
    base: String,
    _profile: TempDir,
}

/// A reference to an element on the current page.
pub struct ElementRef(String);

impl WebDriver {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        command(&self.base, method, path, body).await
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// The URL the browser is on.
    pub async fn current_url(&self) -> String {
        let value = self.cmd("GET", "/url", None).await;
        value.as_str().expect("URL string").to_owned()
    }

    /// The current page's HTML.
    pub async fn source(&self) -> String {
        let value = self.cmd("GET", "/source", None).await;
        value.as_str().expect("source string").to_owned()
    }

    /// The elements matching a CSS selector (possibly none).
    pub async fn find_all(&self, css: &str) -> Vec<ElementRef> {
        let body = json!({"using": "css selector", "value": css});
        let value = self.cmd("POST", "/elements", Some(body)).await;
        value
            .as_array()
            .expect("element list")
            .iter()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| ElementRef(id.to_owned())))
            .collect()
    }

    /// The one element matching a CSS selector; panics with the page if there is none.
    pub async fn find(&self, css: &str) -> ElementRef {
        match self.find_all(css).await.into_iter().next() {
            Some(element) => element,
            None => panic!(
                "no element matches {css:?} on {}\n{}",
                self.current_url().await,
                self.source().await
            ),
        }
    }

    /// Types `text` into the element.
    pub async fn send_keys(&self, element: &ElementRef, text: &str) {
        let path = format!("/element/{}/value", element.0);
        self.cmd("POST", &path, Some(json!({"text": text}))).await;
    }

    /// Empties a text input.
    pub async fn clear(&self, element: &ElementRef) {
        let path = format!("/element/{}/clear", element.0);
        self.cmd("POST", &path, Some(json!({}))).await;
    }

    /// Clicks the element.
    pub async fn click(&self, element: &ElementRef) {
        let path = format!("/element/{}/click", element.0);
        self.cmd("POST", &path, Some(json!({}))).await;
    }

    /// Whether a check box is ticked.
    pub async fn is_selected(&self, element: &ElementRef) -> bool {
        let path = format!("/element/{}/selected", element.0);
        self.cmd("GET", &path, None).await == true
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &ElementRef) -> String {
        let path = format!("/element/{}/text", element.0);
        let value = self.cmd("GET", &path, None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Forgets every cookie of the current site.
    pub async fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None).await;
    }

    /// Polls until an element matches the CSS selector, for up to 10 s.
    pub async fn wait_for(&self, css: &str) -> ElementRef {
        let found = poll(Duration::from_secs(10), || async {
            self.find_all(css).await.into_iter().next()
        })
        .await;
        match found {
            Some(element) => element,
            None => self.find(css).await,
        }
    }

    /// Polls the current URL until `accept` holds, for up to 10 s; returns it.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let found = poll(Duration::from_secs(10), || {
            let this = &self;
            let accept = &accept;
            async move {
                let url = this.current_url().await;
                accept(&url).then_some(url)
            }
        })
        .await;
        match found {
            Some(url) => url,
            None => panic!(
                "browser never reached {what}; it is on {}\n{}",
                self.current_url().await,
                self.source().await
            ),
        }
    }

    /// Sets the window's outer size (screenshots of a laptop-sized window).
    pub async fn set_window(&self, width: u32, height: u32) {
        let rect = json!({"width": width, "height": height});
        self.cmd("POST", "/window/rect", Some(rect)).await;
    }

    /// Saves a PNG of the visible page to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let value = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("screenshot base64"))
            .expect("screenshot is base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session (closes the browser).
    pub async fn quit(self) {
        self.cmd("DELETE", "", None).await;
    }
}
