//! The FUSE side of `cairn mount`: [`fuser::Filesystem`] over the engine's
//! [`cairn_engine::browse::Browser`], converting attributes and mapping errors to errnos.
//! Everything a node is or holds is the browser's; this file only translates, so the model is
//! tested without a mount and the mount tests test the translation.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_engine::browse::{Attr, Browser};
use cairn_engine::tree::EntryKind;
use cairn_engine::{Error, ErrorKind};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

/// How long the kernel may keep what it was told of the folders cairn makes up (their listings
/// change when a backup lands) ...
const TTL_MADE_UP: Duration = Duration::from_secs(1);
/// ... and of what a snapshot or archive holds, which never changes.
const TTL_STORED: Duration = Duration::from_secs(300);
/// Numbers below this are the made-up folders'.
const FIRST_STORED: u64 = 16;

/// The file system the kernel talks to.
pub(super) struct CairnFs {
    pub(super) browser: Browser,
}

fn ttl(ino: u64) -> Duration {
    if ino < FIRST_STORED {
        TTL_MADE_UP
    } else {
        TTL_STORED
    }
}

fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::Chardev => FileType::CharDevice,
        EntryKind::Blockdev => FileType::BlockDevice,
    }
}

/// A time before the epoch counts back from it; one that `SystemTime` cannot hold (a crafted
/// manifest's) is the epoch, never a panic in a thread serving the kernel.
fn time(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(nanos)).unwrap_or(UNIX_EPOCH)
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime, a.mtime_ns);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The errno for an engine error; what is not plain absence is logged, once, with its cause.
/// Only a name that is not there is ENOENT: content that cannot be read (a chunk in no known
/// pack) is EIO, so that `rsync` and `cp` report a failure rather than a file that vanished.
fn errno(op: &str, e: &Error) -> Errno {
    let absent = matches!(op, "lookup" | "getattr" | "opendir" | "readlink");
    match e.kind() {
        ErrorKind::NotFound if absent => {
            tracing::debug!(op, error = %e, "not found");
            Errno::ENOENT
        }
        ErrorKind::Usage => {
            tracing::debug!(op, error = %e, "refused");
            Errno::EINVAL
        }
        ErrorKind::Locked => {
            tracing::warn!(op, error = %e, "busy");
            Errno::EAGAIN
        }
        _ => {
            tracing::warn!(op, error = %e, "a read failed");
            Errno::EIO
        }
    }
}

impl Filesystem for CairnFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.browser.lookup(parent.0, name.as_bytes()) {
            // A name in a folder cairn makes up (`snapshots/DATE`, `archives/DATE`) may change
            // meaning when a backup lands or a gc runs: it is kept no longer than that folder.
            Ok(a) => reply.entry(&ttl(parent.0.min(a.ino)), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.browser.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.browser.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(a.ino), &file_attr(&a)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.browser.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.browser.open(ino.0) {
            // The content never changes: the kernel may keep it cached across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.browser.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.browser.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.browser.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let items = match self.browser.readdir(fh.0) {
            Ok(i) => i,
            Err(e) => return reply.error(errno("readdir", &e)),
        };
        // Offsets: 1 after ".", 2 after "..", 3 + i after item i.
        let dots: [(u64, &[u8]); 2] = [(ino.0, b"."), (ino.0, b"..")];
        let mut at = offset;
        while at < 2 {
            let (n, name) = dots[at as usize];
            if reply.add(
                INodeNo(n),
                at + 1,
                FileType::Directory,
                OsStr::from_bytes(name),
            ) {
                return reply.ok();
            }
            at += 1;
        }
        for (i, item) in items.iter().enumerate().skip((at - 2) as usize) {
            let next = i as u64 + 3;
            if reply.add(
                INodeNo(item.ino),
                next,
                file_type(item.kind),
                OsStr::from_bytes(&item.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.browser.release(fh.0);
        reply.ok();
    }
}
