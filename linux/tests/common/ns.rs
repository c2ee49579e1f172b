//! Private mount and IPC namespaces for the tests that fill `/dev/shm` or list what is
//! left in it and in the mqueue file system (`shm_field`, `restart`). Its own file, not a
//! part of `common`, which other crates' tests include and which has no `libc` there.
//! Included with `#[path = "common/ns.rs"] mod ns;`.

#![allow(dead_code)]

/// Moves this process into a private mount and IPC namespace (`unshare(CLONE_NEWNS |
/// CLONE_NEWIPC)`, as root; call it first thing in a peer, while it has one thread), with a
/// fresh tmpfs of `shm_size` (`mount -t tmpfs -o size=...`) on `/dev/shm`, `kernel.shmall`
/// set to `shmall` pages when given, and, with `mqueue`, the new namespace's message queues
/// listed by an mqueue file system mounted at `/dev/mqueue` (or, where that directory is
/// missing, at a directory made for it under `/tmp`, removed by [`leave_mqueue`]). Returns
/// where the queues are listed. Done with
/// system calls, not the `unshare` and `mount` programs, so that it runs in the boards'
/// guests (tier 2), which carry neither.
pub fn private_ipc(shm_size: &str, shmall: Option<u32>, mqueue: bool) -> Option<String> {
    use std::ffi::CString;
    // SAFETY: plain system calls with valid NUL-terminated strings. The process has a
    // single thread (the caller's contract): another thread would stay in the old
    // namespaces.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let root = CString::new("/").unwrap();
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "making / private: {}",
            std::io::Error::last_os_error()
        );
        let (tmpfs, shm) = (CString::new("tmpfs").unwrap(), CString::new("/dev/shm").unwrap());
        let opts = CString::new(format!("size={shm_size},mode=1777")).unwrap();
        assert_eq!(
            libc::mount(tmpfs.as_ptr(), shm.as_ptr(), tmpfs.as_ptr(), 0, opts.as_ptr().cast()),
            0,
            "tmpfs on /dev/shm: {}",
            std::io::Error::last_os_error()
        );
    }
    if let Some(pages) = shmall {
        std::fs::write("/proc/sys/kernel/shmall", pages.to_string()).expect("kernel.shmall");
    }
    if !mqueue {
        return None;
    }
    let dir = if std::path::Path::new("/dev/mqueue").is_dir() {
        "/dev/mqueue".to_string()
    } else {
        let d = format!("/tmp/ember-mqueue-{}", std::process::id());
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (mq, target) = (std::ffi::CString::new("mqueue").unwrap(), std::ffi::CString::new(dir.as_str()).unwrap());
    // SAFETY: as above.
    let r = unsafe { libc::mount(mq.as_ptr(), target.as_ptr(), mq.as_ptr(), 0, std::ptr::null()) };
    assert_eq!(r, 0, "mqueue on {dir}: {}", std::io::Error::last_os_error());
    Some(dir)
}

/// Unmounts the mqueue file system of [`private_ipc`] and removes its directory if it made
/// one.
pub fn leave_mqueue(dir: &str) {
    if dir != "/dev/mqueue" {
        let c = std::ffi::CString::new(dir).unwrap();
        // SAFETY: a plain system call with a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(dir);
    }
}

/// The names in directory `dir`, sorted (`/dev/shm`, an mqueue mount).
pub fn names_in(dir: &str) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}
