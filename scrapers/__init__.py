"""Image-search scraping: a shared headless-Chromium driver, one module per engine,
and a downloader that checks, deduplicates and files what it fetches."""
